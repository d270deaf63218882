//! An `XREADGROUP` reply, read straight into the entries the consumer parses. The redis crate's
//! `StreamReadReply` builds a hash map per stream, per entry and per field, each with a copy of
//! every value: a fifth of the consumer's CPU on orders spread over 1,310 locations.

use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, Value};

/// A whole reply: the streams that had entries, in the order asked for (none when a blocking
/// read ended without any).
#[derive(Debug, Default)]
pub(super) struct ReadReply(pub(super) Vec<StreamEntries>);

/// The entries read from one stream, oldest first.
#[derive(Debug)]
pub(super) struct StreamEntries {
    pub(super) key: String,
    pub(super) entries: Vec<Entry>,
}

/// One stream entry: its id and its fields as written (none for an entry deleted after it was
/// delivered, which a read of pending entries still names).
#[derive(Debug, PartialEq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Vec<(String, String)>,
}

impl Entry {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        Self::from_owned_redis_value(v.clone())
    }

    fn from_owned_redis_value(v: Value) -> RedisResult<Self> {
        let streams = match v {
            Value::Nil => return Ok(Self::default()),
            // RESP2: [[key, entries], …]
            Value::Array(rows) => rows
                .into_iter()
                .map(|row| match row {
                    Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                        Ok([key, entries]) => stream(key, entries),
                        Err(_) => Err(malformed("a stream of two parts")),
                    },
                    _ => Err(malformed("a stream")),
                })
                .collect::<RedisResult<_>>()?,
            // RESP3: {key: entries, …}
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(key, entries)| stream(key, entries))
                .collect::<RedisResult<_>>()?,
            _ => return Err(malformed("the reply")),
        };
        Ok(Self(streams))
    }
}

fn stream(key: Value, entries: Value) -> RedisResult<StreamEntries> {
    let Value::Array(entries) = entries else {
        return Err(malformed("a stream's entries"));
    };
    Ok(StreamEntries {
        key: text(key)?,
        entries: entries
            .into_iter()
            .map(|entry| {
                let Value::Array(parts) = entry else {
                    return Err(malformed("an entry"));
                };
                let [id, fields] = <[Value; 2]>::try_from(parts)
                    .map_err(|_| malformed("an entry of two parts"))?;
                let fields = match fields {
                    Value::Nil => Vec::new(),
                    Value::Array(flat) => {
                        let mut flat = flat.into_iter();
                        let mut pairs = Vec::with_capacity(flat.len() / 2);
                        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                            pairs.push((text(k)?, text(v)?));
                        }
                        pairs
                    }
                    Value::Map(map) => map
                        .into_iter()
                        .map(|(k, v)| Ok((text(k)?, text(v)?)))
                        .collect::<RedisResult<_>>()?,
                    _ => return Err(malformed("an entry's fields")),
                };
                Ok(Entry {
                    id: text(id)?,
                    fields,
                })
            })
            .collect::<RedisResult<_>>()?,
    })
}

/// A string of the reply, taken over without a copy.
fn text(v: Value) -> RedisResult<String> {
    match v {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| malformed("text in UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(malformed("text")),
    }
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::TypeError,
        "unexpected XREADGROUP reply",
        format!("expected {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn a_reply_in_either_protocol_reads_as_its_streams_and_entries() {
        let entries = || {
            Value::Array(vec![
                entry("1-0", &["t", "R", "o", "7-a"]),
                Value::Array(vec![bulk("1-1"), Value::Nil]),
            ])
        };
        let expect = |r: ReadReply| {
            assert_eq!(r.0.len(), 1);
            assert_eq!(r.0[0].key, "sf:{L7}:events");
            assert_eq!(
                r.0[0].entries,
                [
                    Entry {
                        id: "1-0".into(),
                        fields: vec![("t".into(), "R".into()), ("o".into(), "7-a".into())],
                    },
                    Entry {
                        id: "1-1".into(),
                        fields: vec![],
                    },
                ]
            );
            assert_eq!(r.0[0].entries[0].get("o").as_deref(), Some("7-a"));
            assert_eq!(r.0[0].entries[0].get("j"), None);
        };
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("sf:{L7}:events"), entries()])]);
        expect(ReadReply::from_owned_redis_value(resp2).unwrap());
        let resp3 = Value::Map(vec![(bulk("sf:{L7}:events"), entries())]);
        expect(ReadReply::from_owned_redis_value(resp3).unwrap());
        assert!(ReadReply::from_owned_redis_value(Value::Nil)
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error_not_a_panic() {
        for v in [
            Value::Int(3),
            Value::Array(vec![bulk("only a key")]),
            Value::Array(vec![Value::Array(vec![bulk("k"), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                bulk("k"),
                Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Int(2)])]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                bulk("k"),
                Value::Array(vec![entry("1-0", &["t"]), Value::Okay]),
            ])]),
        ] {
            assert!(ReadReply::from_owned_redis_value(v).is_err());
        }
    }
}
