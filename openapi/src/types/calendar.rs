//! A location's calendar on the wire: opening ranges, and the instants answers show (ISO-8601
//! with the offset of the location's zone, such as `2026-12-07T20:00:00+09:00`).
//!
//! Only the day of a range is checked by the schema; times, dates and zones are strings that
//! `sf_routing::Calendar::parse` validates, so each mistake is a 422 whose `detail` names the
//! field and the value.

use poem_openapi::{Enum, Object};
use sf_routing::{Calendar, OpeningHoursSpec};

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "UPPERCASE")]
pub enum WeekdayBody {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl WeekdayBody {
    const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// The spelling `sf_routing` reads (`MON` .. `SUN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "MON",
            Self::Tue => "TUE",
            Self::Wed => "WED",
            Self::Thu => "THU",
            Self::Fri => "FRI",
            Self::Sat => "SAT",
            Self::Sun => "SUN",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One opening range on a day of the week, `[opens, closes)` in local wall-clock time.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct OpeningHoursBody {
    pub day: WeekdayBody,
    /// `HH:MM`, `00:00` to `23:59`.
    #[oai(validator(max_length = 16))]
    pub opens: String,
    /// `HH:MM`, after `opens`, up to `24:00` (the end of the day). A range that closes at `24:00`
    /// followed by one that opens at `00:00` the next day is one opening across midnight.
    #[oai(validator(max_length = 16))]
    pub closes: String,
}

impl OpeningHoursBody {
    pub fn new(day: WeekdayBody, opens: &str, closes: &str) -> Self {
        Self {
            day,
            opens: opens.into(),
            closes: closes.into(),
        }
    }
}

impl From<OpeningHoursBody> for OpeningHoursSpec {
    fn from(h: OpeningHoursBody) -> Self {
        Self {
            day: h.day.as_str().into(),
            opens: h.opens,
            closes: h.closes,
        }
    }
}

impl From<OpeningHoursSpec> for OpeningHoursBody {
    fn from(h: OpeningHoursSpec) -> Self {
        Self {
            // A validated calendar spells its days as `WeekdayBody` does.
            day: WeekdayBody::parse(&h.day).unwrap_or(WeekdayBody::Mon),
            opens: h.opens,
            closes: h.closes,
        }
    }
}

/// `sameDayOpenUntil` of a store at `now`: the end of today's same-day window, or `None` when
/// same-day is closed for the rest of the day.
pub fn same_day_open_until(calendar: &Calendar, now: jiff::Timestamp) -> Option<String> {
    calendar
        .same_day_open_until(now)
        .as_ref()
        .map(sf_routing::rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sf_routing::CalendarSpec;

    #[test]
    fn days_round_trip_through_the_routing_spelling() {
        for day in WeekdayBody::ALL {
            assert_eq!(WeekdayBody::parse(day.as_str()), Some(day));
        }
    }

    #[test]
    fn an_instant_shows_with_the_offset_of_its_zone() {
        let calendar = Calendar::parse(&CalendarSpec {
            opening_hours: vec![OpeningHoursBody::new(WeekdayBody::Mon, "10:00", "22:00").into()],
            same_day_cutoff: Some("20:00".into()),
            ..CalendarSpec::default()
        })
        .unwrap();
        // Monday 2026-12-07, 12:00 in Seoul.
        let noon: jiff::Timestamp = "2026-12-07T03:00:00Z".parse().unwrap();
        assert_eq!(
            same_day_open_until(&calendar, noon).as_deref(),
            Some("2026-12-07T20:00:00+09:00")
        );
        let late: jiff::Timestamp = "2026-12-07T11:30:00Z".parse().unwrap();
        assert_eq!(same_day_open_until(&calendar, late), None);
    }
}
