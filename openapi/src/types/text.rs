//! A JSON string that takes only a string.

/// A JSON string, and only a string: poem-openapi's `String` also takes a number or a boolean
/// (`false` would become the name "false"), which the schema (`type: string`) does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl poem_openapi::types::Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <String as poem_openapi::types::Type>::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Ok(Self(s)),
            other => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}
