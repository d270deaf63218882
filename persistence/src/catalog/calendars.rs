//! How a location's calendar is kept: the `locations.calendar` JSON column (migration `0008`),
//! what an operator's change does to it, and how a stored one is read back.
//!
//! The column holds the calendar as [`CalendarSpec`] spells it, validated and with every default
//! written out ([`Calendar::spec`]); NULL means the always-open default. Validation is
//! [`Calendar::parse`]'s alone: its message is the client's 422 `detail` as it is.

use crate::error::{Refusal, StorageResult};
use sf_routing::{Calendar, CalendarSpec, LocationId, OpeningHoursSpec};
use std::sync::Arc;

/// Changes to a location's calendar; `None` keeps the current value. The merged calendar is
/// validated as a whole before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarChange {
    /// An IANA zone name.
    pub time_zone: Option<String>,
    /// Replaces every range; `Some(vec![])` makes the location open around the clock again.
    pub opening_hours: Option<Vec<OpeningHoursSpec>>,
    /// Replaces every date; `Some(vec![])` clears them.
    pub closed_dates: Option<Vec<String>>,
    /// `Some(None)` removes the cut-off (same-day then ends at closing time minus preparation).
    pub same_day_cutoff: Option<Option<String>>,
    pub pickup_preparation_minutes: Option<i64>,
}

impl CalendarChange {
    /// Whether the change leaves the calendar as it is.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The calendar after the change: `current` with each field sent replaced, validated.
    pub fn apply(self, current: &Calendar) -> Result<Calendar, Refusal> {
        let mut spec = current.spec();
        if let Some(zone) = self.time_zone {
            spec.time_zone = Some(zone);
        }
        if let Some(hours) = self.opening_hours {
            spec.opening_hours = hours;
        }
        if let Some(dates) = self.closed_dates {
            spec.closed_dates = dates;
        }
        if let Some(cutoff) = self.same_day_cutoff {
            spec.same_day_cutoff = cutoff;
        }
        if let Some(minutes) = self.pickup_preparation_minutes {
            spec.pickup_preparation_minutes = Some(minutes);
        }
        parse(&spec)
    }
}

/// Validates a calendar a client sent; a refusal carries [`Calendar::parse`]'s message.
pub fn parse(spec: &CalendarSpec) -> Result<Calendar, Refusal> {
    Calendar::parse(spec).map_err(|e| Refusal::Invalid(e.to_string()))
}

/// What the column holds for `calendar`: NULL for the always-open default, so a location whose
/// calendar is set back to it reads like one that never had one.
pub(super) fn to_column(calendar: &Calendar) -> StorageResult<Option<String>> {
    if calendar == sf_routing::calendar::always_open() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(&calendar.spec())?))
}

/// The calendar a row holds. One that cannot be read (only a hand-edited row could hold one; the
/// routes validate before writing) is logged and treated as none: the location stays open around
/// the clock rather than dropping out of routing.
pub(super) fn from_column(id: LocationId, column: Option<&str>) -> Option<Arc<Calendar>> {
    let text = column?;
    let parsed = serde_json::from_str::<CalendarSpec>(text)
        .map_err(|e| e.to_string())
        .and_then(|spec| Calendar::parse(&spec).map_err(|e| e.to_string()));
    match parsed {
        Ok(calendar) => Some(Arc::new(calendar)),
        Err(error) => {
            tracing::error!(
                location = id.get(),
                %error,
                "location {id}: its stored calendar cannot be read; \
                 treated as open around the clock",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(day: &str, opens: &str, closes: &str) -> OpeningHoursSpec {
        OpeningHoursSpec {
            day: day.into(),
            opens: opens.into(),
            closes: closes.into(),
        }
    }

    fn id() -> LocationId {
        LocationId::new_unchecked(7)
    }

    #[test]
    fn the_default_calendar_is_stored_as_null_and_null_reads_as_none() {
        assert_eq!(to_column(&Calendar::default()).unwrap(), None);
        assert_eq!(from_column(id(), None), None);
    }

    #[test]
    fn a_stored_calendar_reads_back_the_same() {
        let calendar = parse(&CalendarSpec {
            time_zone: Some("Europe/Berlin".into()),
            opening_hours: vec![
                hours("TUE", "10:00", "18:00"),
                hours("MON", "09:00", "24:00"),
            ],
            closed_dates: vec!["2026-12-25".into(), "2026-12-24".into()],
            same_day_cutoff: Some("16:00".into()),
            pickup_preparation_minutes: Some(45),
        })
        .unwrap();
        let column = to_column(&calendar).unwrap().unwrap();
        assert_eq!(
            column,
            r#"{"timeZone":"Europe/Berlin","openingHours":[{"day":"MON","opens":"09:00","closes":"24:00"},{"day":"TUE","opens":"10:00","closes":"18:00"}],"closedDates":["2026-12-24","2026-12-25"],"sameDayCutoff":"16:00","pickupPreparationMinutes":45}"#
        );
        assert_eq!(from_column(id(), Some(&column)).as_deref(), Some(&calendar));
    }

    #[test]
    fn an_unreadable_stored_calendar_is_none() {
        assert_eq!(from_column(id(), Some("not json")), None);
        assert_eq!(
            from_column(id(), Some(r#"{"timeZone":"Mars/Olympus"}"#)),
            None
        );
    }

    #[test]
    fn a_change_replaces_only_what_it_sends_and_is_validated_whole() {
        let current = parse(&CalendarSpec {
            opening_hours: vec![hours("MON", "10:00", "22:00")],
            closed_dates: vec!["2026-12-25".into()],
            same_day_cutoff: Some("18:00".into()),
            ..CalendarSpec::default()
        })
        .unwrap();
        let changed = CalendarChange {
            closed_dates: Some(vec![]),
            same_day_cutoff: Some(None),
            pickup_preparation_minutes: Some(10),
            ..CalendarChange::default()
        }
        .apply(&current)
        .unwrap();
        let spec = changed.spec();
        assert_eq!(spec.opening_hours, vec![hours("MON", "10:00", "22:00")]);
        assert_eq!(spec.closed_dates, Vec::<String>::new());
        assert_eq!(spec.same_day_cutoff, None);
        assert_eq!(spec.pickup_preparation_minutes, Some(10));
        assert_eq!(spec.time_zone.as_deref(), Some("Asia/Seoul"));

        let refused = CalendarChange {
            opening_hours: Some(vec![
                hours("MON", "10:00", "14:00"),
                hours("MON", "13:00", "18:00"),
            ]),
            ..CalendarChange::default()
        }
        .apply(&current);
        assert_eq!(
            refused,
            Err(Refusal::Invalid(
                "openingHours: two ranges of MON overlap: 10:00–14:00 and 13:00–18:00".into()
            ))
        );
        let always_open = CalendarChange {
            opening_hours: Some(vec![]),
            closed_dates: Some(vec![]),
            same_day_cutoff: Some(None),
            ..CalendarChange::default()
        }
        .apply(&current)
        .unwrap();
        assert_eq!(to_column(&always_open).unwrap(), None);
    }
}
