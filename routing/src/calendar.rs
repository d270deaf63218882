//! A location's calendar: its time zone, weekly opening hours, closed dates, same-day cut-off and
//! pickup preparation time, and the questions routing asks of it.
//!
//! Every question takes the current instant (`now`) as an argument; this module never reads a
//! clock. Wall-clock times are converted to instants with `jiff` and the IANA database compiled
//! into the binary, so a host's tzdata (or its absence) never changes an answer.
//!
//! # Rules
//!
//! - Times are local wall-clock times in the calendar's zone. A range is `[opens, closes)`;
//!   `closes` may be `24:00`. Ranges of one day that touch (`10:00–14:00`, `14:00–18:00`) are one
//!   opening; ranges that overlap are refused.
//! - A weekday with no range is closed. A calendar with no opening hours at all is open around
//!   the clock, except on its closed dates.
//! - A closed date closes the whole civil date, `00:00` to `24:00`, including the part of an
//!   opening that runs into it from the evening before.
//! - A range that closes at `24:00` followed by one that opens at `00:00` the next day is one
//!   continuous opening (a store open across midnight).
//! - Daylight saving time: a range opens at the first instant whose local time is at or past
//!   `opens`, and closes likewise at `closes`. When `opens` falls in a spring-forward gap the store
//!   opens at the transition; when a time occurs twice (a fall-back fold) the first occurrence
//!   counts.
//! - The same-day window is open while the location is open, not on a closed date, and before
//!   the cut-off: `sameDayCutoff` on that local date when set, otherwise the end of the current
//!   opening minus the pickup preparation time.
//! - Searches ahead (next window, next opening) look at most [`SEARCH_DAYS`] days forward.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::LazyLock;

/// The zone of a calendar that names none.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Seoul";
/// Preparation time for a pickup when the calendar names none: long enough to pick and pack a
/// typical basket, short enough to promise "ready within the half hour".
pub const DEFAULT_PICKUP_PREPARATION_MINUTES: u16 = 30;
/// The longest preparation time a calendar accepts (a full day).
pub const MAX_PICKUP_PREPARATION_MINUTES: u16 = 24 * 60;
/// How many days past today the forward searches look before answering "never".
pub const SEARCH_DAYS: u16 = 14;

const MINUTES_PER_DAY: u16 = 24 * 60;
const WEEKDAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// The database every zone name is looked up in: the copy compiled into the binary, chosen
/// explicitly so that a feature enabled elsewhere in a build cannot switch it to the host's.
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);
/// What a location without a calendar follows: open around the clock, no cut-off.
static ALWAYS_OPEN: LazyLock<Calendar> = LazyLock::new(|| {
    Calendar::parse(&CalendarSpec::default()).expect("the default calendar is valid")
});

/// Why a calendar was refused. Each message names the field (in the API's spelling) and the
/// offending value, so it can be shown as a 422 `detail` as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("timeZone: {0:?} is not a known IANA time zone")]
    UnknownTimeZone(String),
    #[error(
        "openingHours[{index}].day: {value:?} is not one of MON, TUE, WED, THU, FRI, SAT, SUN"
    )]
    BadDay { index: usize, value: String },
    #[error("{field}: {value:?} is not a time HH:MM ({allowed})")]
    BadTime {
        field: String,
        value: String,
        allowed: &'static str,
    },
    #[error("openingHours[{index}]: closes {closes} is not after opens {opens}")]
    ClosesNotAfterOpens {
        index: usize,
        opens: ClockTime,
        closes: ClockTime,
    },
    #[error("openingHours: two ranges of {day} overlap: {first} and {second}")]
    Overlap {
        day: &'static str,
        first: String,
        second: String,
    },
    #[error("closedDates[{index}]: {value:?} is not a date YYYY-MM-DD")]
    BadDate { index: usize, value: String },
    #[error("pickupPreparationMinutes must be between 0 and {max}, got {value}")]
    BadPreparation { value: i64, max: u16 },
}

/// A calendar as a client or a storage row spells it, before validation. Field names follow the
/// API (`timeZone`, `openingHours`, ...). [`Calendar::parse`] validates it; [`Calendar::spec`]
/// gives it back, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarSpec {
    /// IANA name; absent means [`DEFAULT_TIME_ZONE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Empty means open around the clock.
    #[serde(default)]
    pub opening_hours: Vec<OpeningHoursSpec>,
    /// Civil dates `YYYY-MM-DD` in the calendar's zone.
    #[serde(default)]
    pub closed_dates: Vec<String>,
    /// `HH:MM`; absent means "closing time minus the preparation time".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_day_cutoff: Option<String>,
    /// Absent means [`DEFAULT_PICKUP_PREPARATION_MINUTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_preparation_minutes: Option<i64>,
}

/// One opening range as spelled: `{"day": "MON", "opens": "10:00", "closes": "22:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpeningHoursSpec {
    pub day: String,
    pub opens: String,
    pub closes: String,
}

/// A wall-clock time of day in whole minutes, `00:00` ..= `24:00` (`24:00` is the end of the day
/// and only valid as a closing time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime(u16);

impl ClockTime {
    /// Midnight at the end of the day.
    pub const END_OF_DAY: Self = Self(MINUTES_PER_DAY);

    /// Parses exactly `HH:MM`, `00:00` ..= `23:59`, and `24:00` when `allow_end_of_day`.
    pub fn parse(s: &str, allow_end_of_day: bool) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 5 || b[2] != b':' {
            return None;
        }
        let digit = |i: usize| b[i].is_ascii_digit().then(|| u16::from(b[i] - b'0'));
        let hours = digit(0)? * 10 + digit(1)?;
        let minutes = digit(3)? * 10 + digit(4)?;
        let value = hours * 60 + minutes;
        let ok = minutes < 60 && (hours < 24 || (allow_end_of_day && value == MINUTES_PER_DAY));
        ok.then_some(Self(value))
    }

    /// Minutes since the start of the day, 0 ..= 1440.
    pub const fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One validated opening range: `[opens, closes)` on `day`, `opens < closes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningHours {
    pub day: Weekday,
    pub opens: ClockTime,
    pub closes: ClockTime,
}

/// A validated calendar. Cheap to query; build it once per location (for example when the
/// location index is loaded) and share it behind an `Arc`.
///
/// `Calendar::default()` is the calendar of a location that has none: [`DEFAULT_TIME_ZONE`], open
/// around the clock, no closed dates, no cut-off, [`DEFAULT_PICKUP_PREPARATION_MINUTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    tz: TimeZone,
    /// The ranges as given, sorted by day and opening time (for [`Calendar::spec`]).
    hours: Vec<OpeningHours>,
    /// Per weekday (Monday first), `[opens, closes)` in minutes, sorted, touching ranges merged.
    /// Every day is `[0, 1440)` when the calendar has no hours.
    week: [Vec<(u16, u16)>; 7],
    /// Sorted, without duplicates.
    closed: Vec<Date>,
    cutoff: Option<ClockTime>,
    preparation_minutes: u16,
}

impl Default for Calendar {
    fn default() -> Self {
        ALWAYS_OPEN.clone()
    }
}

/// `[start, end)` between two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: Timestamp,
    end: Timestamp,
}

impl Calendar {
    /// Validates a calendar as spelled by a client or a storage row.
    pub fn parse(spec: &CalendarSpec) -> Result<Self, CalendarError> {
        let zone = spec.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE);
        let tz = TZDB
            .get(zone)
            .map_err(|_| CalendarError::UnknownTimeZone(zone.to_owned()))?;

        let mut hours = Vec::with_capacity(spec.opening_hours.len());
        for (index, range) in spec.opening_hours.iter().enumerate() {
            let day = WEEKDAYS
                .iter()
                .position(|d| *d == range.day)
                .map(weekday)
                .ok_or_else(|| CalendarError::BadDay {
                    index,
                    value: range.day.clone(),
                })?;
            let opens =
                ClockTime::parse(&range.opens, false).ok_or_else(|| CalendarError::BadTime {
                    field: format!("openingHours[{index}].opens"),
                    value: range.opens.clone(),
                    allowed: "00:00 to 23:59",
                })?;
            let closes =
                ClockTime::parse(&range.closes, true).ok_or_else(|| CalendarError::BadTime {
                    field: format!("openingHours[{index}].closes"),
                    value: range.closes.clone(),
                    allowed: "00:01 to 24:00",
                })?;
            if closes <= opens {
                return Err(CalendarError::ClosesNotAfterOpens {
                    index,
                    opens,
                    closes,
                });
            }
            hours.push(OpeningHours { day, opens, closes });
        }
        hours.sort_by_key(|h| (h.day.to_monday_zero_offset(), h.opens, h.closes));

        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for h in &hours {
            let day = &mut week[day_index(h.day)];
            let (opens, closes) = (h.opens.minutes(), h.closes.minutes());
            match day.last_mut() {
                Some(last) if last.1 > opens => {
                    let show = |(o, c): (u16, u16)| format!("{}–{}", ClockTime(o), ClockTime(c));
                    return Err(CalendarError::Overlap {
                        day: WEEKDAYS[day_index(h.day)],
                        first: show(*last),
                        second: show((opens, closes)),
                    });
                }
                Some(last) if last.1 == opens => last.1 = closes,
                _ => day.push((opens, closes)),
            }
        }
        if hours.is_empty() {
            week = std::array::from_fn(|_| vec![(0, MINUTES_PER_DAY)]);
        }

        let mut closed = spec
            .closed_dates
            .iter()
            .enumerate()
            .map(|(index, value)| {
                parse_date(value).ok_or_else(|| CalendarError::BadDate {
                    index,
                    value: value.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        closed.sort_unstable();
        closed.dedup();

        let cutoff = spec
            .same_day_cutoff
            .as_deref()
            .map(|s| {
                ClockTime::parse(s, false).ok_or_else(|| CalendarError::BadTime {
                    field: "sameDayCutoff".to_owned(),
                    value: s.to_owned(),
                    allowed: "00:00 to 23:59",
                })
            })
            .transpose()?;

        let preparation = spec
            .pickup_preparation_minutes
            .unwrap_or(i64::from(DEFAULT_PICKUP_PREPARATION_MINUTES));
        let preparation_minutes = u16::try_from(preparation)
            .ok()
            .filter(|m| *m <= MAX_PICKUP_PREPARATION_MINUTES)
            .ok_or(CalendarError::BadPreparation {
                value: preparation,
                max: MAX_PICKUP_PREPARATION_MINUTES,
            })?;

        Ok(Self {
            tz,
            hours,
            week,
            closed,
            cutoff,
            preparation_minutes,
        })
    }

    /// The calendar spelled back: the zone's IANA name, ranges sorted by day and time as given
    /// (touching ranges are not joined), dates sorted without duplicates, every default filled in.
    pub fn spec(&self) -> CalendarSpec {
        CalendarSpec {
            time_zone: Some(self.time_zone_name().to_owned()),
            opening_hours: self
                .hours
                .iter()
                .map(|h| OpeningHoursSpec {
                    day: WEEKDAYS[day_index(h.day)].to_owned(),
                    opens: h.opens.to_string(),
                    closes: h.closes.to_string(),
                })
                .collect(),
            closed_dates: self.closed.iter().map(|d| d.to_string()).collect(),
            same_day_cutoff: self.cutoff.map(|c| c.to_string()),
            pickup_preparation_minutes: Some(i64::from(self.preparation_minutes)),
        }
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
    pub fn time_zone_name(&self) -> &str {
        self.tz.iana_name().unwrap_or(DEFAULT_TIME_ZONE)
    }
    /// The ranges as given, sorted by day and opening time; empty means open around the clock.
    pub fn opening_hours(&self) -> &[OpeningHours] {
        &self.hours
    }
    pub fn closed_dates(&self) -> &[Date] {
        &self.closed
    }
    pub fn same_day_cutoff(&self) -> Option<ClockTime> {
        self.cutoff
    }
    pub fn pickup_preparation(&self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.preparation_minutes))
    }

    /// Whether `date` (a civil date in the calendar's zone) is a closed date.
    pub fn is_closed_on(&self, date: Date) -> bool {
        self.closed.binary_search(&date).is_ok()
    }

    /// Whether the location is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let Some(first) = self.local_date(now).yesterday().ok() else {
            return false;
        };
        // Yesterday's ranges end by today 00:00 and tomorrow's start after it, but a fold at
        // midnight can shift a local date against its instants; three days cover that.
        self.ranges(first, 3)
            .take_while(|r| r.start <= now)
            .any(|r| now < r.end)
    }

    /// Whether a same-day order may be routed here at `now`: open, not on a closed date, and
    /// before the cut-off (see the module's rules).
    pub fn is_same_day_open(&self, now: Timestamp) -> bool {
        match self.cutoff {
            Some(cutoff) => {
                self.at(self.local_date(now), cutoff.minutes())
                    .is_some_and(|c| now < c)
                    && self.is_open(now)
            }
            None => now
                .checked_add(self.pickup_preparation())
                .is_ok_and(|ready| self.open_through(now, ready)),
        }
    }

    /// Today's same-day cut-off as seen at `now`: the end of the last same-day window that starts
    /// on today's local date and has not ended yet, at most the end of today (`24:00`). `None`
    /// when same-day is closed for the rest of the day (a closed date, past the cut-off, or no
    /// opening left today).
    pub fn same_day_open_until(&self, now: Timestamp) -> Option<Zoned> {
        let midnight = self.at(self.local_date(now).tomorrow().ok()?, 0)?;
        let last = self
            .same_day_windows(now)
            .take_while(|w| w.start < midnight)
            .last()?;
        Some(last.end.min(midnight).to_zoned(self.tz.clone()))
    }

    /// The earliest instant at or after `now` at which the same-day window is open: `now` itself
    /// when it is open, else the start of the next window within [`SEARCH_DAYS`], else `None`.
    pub fn next_same_day_at(&self, now: Timestamp) -> Option<Zoned> {
        let window = self.same_day_windows(now).next()?;
        Some(window.start.max(now).to_zoned(self.tz.clone()))
    }

    /// When a pickup ordered at `now` is ready: `now` plus the preparation time when the
    /// location is open and stays open until then (across midnight when an opening runs on),
    /// else the first later opening long enough for the preparation, plus the preparation,
    /// skipping closed dates. `None` when no such opening starts within [`SEARCH_DAYS`].
    ///
    /// The answer always lies inside an opening, never on a closed date.
    pub fn ready_by(&self, now: Timestamp) -> Option<Zoned> {
        let preparation = self.pickup_preparation();
        self.openings(now)
            .find_map(|o| {
                let ready = o.start.max(now).checked_add(preparation).ok()?;
                (ready < o.end).then_some(ready)
            })
            .map(|ready| ready.to_zoned(self.tz.clone()))
    }

    fn local_date(&self, now: Timestamp) -> Date {
        self.tz.to_datetime(now).date()
    }

    /// The first instant whose local time is at or past `minute` on `date` (`1440` is the next
    /// day's `00:00`). In a spring-forward gap that is the transition; in a fold, the first pass.
    fn at(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = if minute >= MINUTES_PER_DAY {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minute)
        };
        let dt: DateTime = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        let ambiguous = self.tz.to_ambiguous_timestamp(dt);
        match ambiguous.offset() {
            AmbiguousOffset::Gap { .. } => {
                // `earlier` reads the wall time with the offset after the gap, which lands
                // before the transition; the transition is the first instant past the wall time.
                let before = ambiguous.earlier().ok()?;
                Some(self.tz.following(before).next()?.timestamp())
            }
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                ambiguous.earlier().ok()
            }
        }
    }

    /// The opening ranges of `days` civil dates from `first`, as instants, in order; closed
    /// dates and ranges that fall entirely in a gap yield nothing.
    fn ranges(&self, first: Date, days: u16) -> impl Iterator<Item = Interval> + '_ {
        std::iter::successors(Some(first), |d| d.tomorrow().ok())
            .take(usize::from(days))
            .filter(|d| !self.is_closed_on(*d))
            .flat_map(move |date| {
                self.week[day_index(date.weekday())]
                    .iter()
                    .filter_map(move |&(opens, closes)| {
                        let start = self.at(date, opens)?;
                        let end = self.at(date, closes)?;
                        (start < end).then_some(Interval { start, end })
                    })
            })
    }

    /// The ranges from yesterday to [`SEARCH_DAYS`] ahead, joined where one ends as the next
    /// starts (across midnight, or around a closed-date-free week of a 24-hour calendar), that
    /// end after `now`.
    fn openings(&self, now: Timestamp) -> impl Iterator<Item = Interval> + '_ {
        let first = self.local_date(now).yesterday().ok();
        let mut ranges = first
            .into_iter()
            .flat_map(|first| self.ranges(first, SEARCH_DAYS + 2))
            .peekable();
        std::iter::from_fn(move || {
            let mut joined = ranges.next()?;
            while let Some(next) = ranges.next_if(|r| r.start <= joined.end) {
                joined.end = joined.end.max(next.end);
            }
            Some(joined)
        })
        .filter(move |o| o.end > now)
    }

    /// Whether one opening holds every instant of `[now, until]`.
    fn open_through(&self, now: Timestamp, until: Timestamp) -> bool {
        let Some(first) = self.local_date(now).yesterday().ok() else {
            return false;
        };
        let mut reach: Option<Timestamp> = None;
        for r in self.ranges(first, SEARCH_DAYS + 2) {
            reach = match reach {
                None if r.end <= now => continue,
                None if r.start > now => return false,
                None => Some(r.end),
                Some(reach) if r.start <= reach => Some(reach.max(r.end)),
                Some(_) => return false,
            };
            if reach.is_some_and(|reach| reach > until) {
                return true;
            }
        }
        false
    }

    /// The same-day windows that end after `now`, in order.
    fn same_day_windows(&self, now: Timestamp) -> impl Iterator<Item = Interval> + '_ {
        let preparation = self.pickup_preparation();
        self.openings(now)
            .flat_map(move |o| {
                let mut windows = Vec::new();
                match self.cutoff {
                    None => {
                        if let Ok(end) = o.end.checked_sub(preparation) {
                            windows.push(Interval {
                                start: o.start,
                                end,
                            });
                        }
                    }
                    Some(cutoff) => {
                        // One window per local date the opening touches: from the later of the
                        // opening and that day's start, to the earlier of its end and the cut-off.
                        let last = self.local_date(
                            o.end
                                .checked_sub(SignedDuration::from_nanos(1))
                                .unwrap_or(o.end),
                        );
                        let mut date = self.local_date(o.start);
                        while date <= last {
                            if let (Some(day_start), Some(cut)) =
                                (self.at(date, 0), self.at(date, cutoff.minutes()))
                            {
                                windows.push(Interval {
                                    start: o.start.max(day_start),
                                    end: o.end.min(cut),
                                });
                            }
                            let Ok(next) = date.tomorrow() else { break };
                            date = next;
                        }
                    }
                }
                windows
            })
            .filter(move |w| w.start < w.end && w.end > now)
    }
}

/// The calendar that answers for a location without one (see [`Calendar::default`]).
pub fn always_open() -> &'static Calendar {
    &ALWAYS_OPEN
}

/// An instant as clients read it: RFC 3339 to the second with the offset of its zone at that
/// instant (`2026-12-07T18:30:00+09:00`).
pub fn rfc3339(at: &Zoned) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn weekday(monday_zero: usize) -> Weekday {
    Weekday::from_monday_zero_offset(monday_zero as i8).expect("0..7")
}

fn day_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

/// Exactly `YYYY-MM-DD`, a real date.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    let year: i16 = s[0..4].parse().ok()?;
    let month: i8 = s[5..7].parse().ok()?;
    let day: i8 = s[8..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zone: &str, hours: &[(&str, &str, &str)]) -> CalendarSpec {
        CalendarSpec {
            time_zone: Some(zone.to_owned()),
            opening_hours: hours
                .iter()
                .map(|(day, opens, closes)| OpeningHoursSpec {
                    day: (*day).to_owned(),
                    opens: (*opens).to_owned(),
                    closes: (*closes).to_owned(),
                })
                .collect(),
            ..CalendarSpec::default()
        }
    }

    fn calendar(zone: &str, hours: &[(&str, &str, &str)]) -> Calendar {
        Calendar::parse(&spec(zone, hours)).expect("a valid calendar")
    }

    fn every_day(opens: &str, closes: &str) -> Vec<(&'static str, String, String)> {
        WEEKDAYS
            .iter()
            .map(|d| (*d, opens.to_owned(), closes.to_owned()))
            .collect()
    }

    fn daily(zone: &str, opens: &str, closes: &str) -> Calendar {
        let hours = every_day(opens, closes);
        let hours: Vec<(&str, &str, &str)> = hours
            .iter()
            .map(|(d, o, c)| (*d, o.as_str(), c.as_str()))
            .collect();
        calendar(zone, &hours)
    }

    /// The instant of a local wall-clock time (`2026-12-07T10:00`) in the calendar's zone; the
    /// first one in a fold.
    fn at(cal: &Calendar, local: &str) -> Timestamp {
        let dt: DateTime = local.parse().expect("a civil datetime");
        cal.time_zone()
            .to_ambiguous_timestamp(dt)
            .earlier()
            .expect("in range")
    }

    /// A zoned answer as local `YYYY-MM-DDTHH:MM` and its offset.
    fn show(z: Option<Zoned>) -> Option<String> {
        z.map(|z| z.strftime("%Y-%m-%dT%H:%M%:z").to_string())
    }

    fn err(s: &CalendarSpec) -> String {
        Calendar::parse(s).expect_err("refused").to_string()
    }

    // 2026-12-07 is a Monday.

    #[test]
    fn invalid_calendars_are_refused_with_a_field_and_a_value() {
        assert_eq!(
            err(&spec("Mars/Olympus", &[])),
            r#"timeZone: "Mars/Olympus" is not a known IANA time zone"#
        );
        assert_eq!(
            err(&spec(
                "Asia/Seoul",
                &[("MON", "10:00", "22:00"), ("FUN", "10:00", "22:00")]
            )),
            r#"openingHours[1].day: "FUN" is not one of MON, TUE, WED, THU, FRI, SAT, SUN"#
        );
        assert_eq!(
            err(&spec("Asia/Seoul", &[("MON", "9:00", "22:00")])),
            r#"openingHours[0].opens: "9:00" is not a time HH:MM (00:00 to 23:59)"#
        );
        assert_eq!(
            err(&spec("Asia/Seoul", &[("MON", "24:00", "24:00")])),
            r#"openingHours[0].opens: "24:00" is not a time HH:MM (00:00 to 23:59)"#
        );
        assert_eq!(
            err(&spec("Asia/Seoul", &[("MON", "10:00", "24:01")])),
            r#"openingHours[0].closes: "24:01" is not a time HH:MM (00:01 to 24:00)"#
        );
        assert_eq!(
            err(&spec("Asia/Seoul", &[("MON", "10:00", "10:00")])),
            "openingHours[0]: closes 10:00 is not after opens 10:00"
        );
        assert_eq!(
            err(&spec(
                "Asia/Seoul",
                &[("TUE", "12:00", "20:00"), ("TUE", "09:00", "12:30")]
            )),
            "openingHours: two ranges of TUE overlap: 09:00–12:30 and 12:00–20:00"
        );
        let mut s = spec("Asia/Seoul", &[]);
        s.closed_dates = vec!["2026-12-25".into(), "2026-02-30".into()];
        assert_eq!(
            err(&s),
            r#"closedDates[1]: "2026-02-30" is not a date YYYY-MM-DD"#
        );
        let mut s = spec("Asia/Seoul", &[]);
        s.same_day_cutoff = Some("18:0".into());
        assert_eq!(
            err(&s),
            r#"sameDayCutoff: "18:0" is not a time HH:MM (00:00 to 23:59)"#
        );
        let mut s = spec("Asia/Seoul", &[]);
        s.pickup_preparation_minutes = Some(-5);
        assert_eq!(
            err(&s),
            "pickupPreparationMinutes must be between 0 and 1440, got -5"
        );
    }

    #[test]
    fn a_spec_round_trips_normalised_with_defaults_filled_in() {
        let mut s = spec(
            "europe/berlin",
            &[
                ("TUE", "14:00", "18:00"),
                ("MON", "10:00", "22:00"),
                ("TUE", "10:00", "14:00"),
            ],
        );
        s.closed_dates = vec![
            "2026-12-25".into(),
            "2026-12-24".into(),
            "2026-12-25".into(),
        ];
        let cal = Calendar::parse(&s).unwrap();
        let back = cal.spec();
        assert_eq!(back.time_zone.as_deref(), Some("Europe/Berlin"));
        let hours: Vec<_> = back
            .opening_hours
            .iter()
            .map(|h| format!("{} {}-{}", h.day, h.opens, h.closes))
            .collect();
        assert_eq!(
            hours,
            ["MON 10:00-22:00", "TUE 10:00-14:00", "TUE 14:00-18:00"]
        );
        assert_eq!(back.closed_dates, ["2026-12-24", "2026-12-25"]);
        assert_eq!(back.same_day_cutoff, None);
        assert_eq!(back.pickup_preparation_minutes, Some(30));
        assert_eq!(Calendar::parse(&back).unwrap(), cal);

        let default = Calendar::default();
        assert_eq!(default.time_zone_name(), DEFAULT_TIME_ZONE);
        assert!(default.opening_hours().is_empty());
        assert_eq!(default.pickup_preparation(), SignedDuration::from_mins(30));
    }

    #[test]
    fn a_day_without_a_range_is_closed() {
        let cal = calendar("Asia/Seoul", &[("MON", "10:00", "22:00")]);
        assert!(!cal.is_open(at(&cal, "2026-12-07T09:59")));
        assert!(cal.is_open(at(&cal, "2026-12-07T10:00")));
        assert!(cal.is_open(at(&cal, "2026-12-07T21:59")));
        assert!(!cal.is_open(at(&cal, "2026-12-07T22:00")));
        assert!(!cal.is_open(at(&cal, "2026-12-08T12:00")));
        // Next Monday.
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-12-08T12:00"))).as_deref(),
            Some("2026-12-14T10:30+09:00")
        );
    }

    #[test]
    fn no_hours_is_always_open_except_on_closed_dates() {
        let mut s = spec("Asia/Seoul", &[]);
        s.closed_dates = vec!["2026-12-25".into()];
        let cal = Calendar::parse(&s).unwrap();
        assert!(cal.is_open(at(&cal, "2026-12-24T23:59")));
        assert!(!cal.is_open(at(&cal, "2026-12-25T00:00")));
        assert!(!cal.is_open(at(&cal, "2026-12-25T12:00")));
        assert!(cal.is_open(at(&cal, "2026-12-26T00:00")));
        // Without a cut-off, same-day closes the preparation time before the closed date.
        assert!(cal.is_same_day_open(at(&cal, "2026-12-24T23:29")));
        assert!(!cal.is_same_day_open(at(&cal, "2026-12-24T23:30")));
        assert_eq!(
            show(cal.same_day_open_until(at(&cal, "2026-12-24T12:00"))).as_deref(),
            Some("2026-12-24T23:30+09:00")
        );
        // A window without end is reported up to the end of today.
        assert_eq!(
            show(cal.same_day_open_until(at(&cal, "2026-12-22T12:00"))).as_deref(),
            Some("2026-12-23T00:00+09:00")
        );
        assert_eq!(
            show(cal.next_same_day_at(at(&cal, "2026-12-25T08:00"))).as_deref(),
            Some("2026-12-26T00:00+09:00")
        );
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-12-24T23:50"))).as_deref(),
            Some("2026-12-26T00:30+09:00")
        );
        assert_eq!(
            show(Calendar::default().ready_by(at(&cal, "2026-12-25T12:00"))).as_deref(),
            Some("2026-12-25T12:30+09:00")
        );
    }

    #[test]
    fn the_cut_off_closes_same_day_while_the_store_stays_open() {
        let mut s = spec("Asia/Seoul", &[]);
        s.opening_hours = daily("Asia/Seoul", "10:00", "22:00").spec().opening_hours;
        s.same_day_cutoff = Some("18:00".into());
        s.closed_dates = vec!["2026-12-08".into()];
        let cal = Calendar::parse(&s).unwrap();

        let before_opening = at(&cal, "2026-12-07T09:00");
        assert!(!cal.is_same_day_open(before_opening));
        assert_eq!(
            show(cal.same_day_open_until(before_opening)).as_deref(),
            Some("2026-12-07T18:00+09:00")
        );
        assert_eq!(
            show(cal.next_same_day_at(before_opening)).as_deref(),
            Some("2026-12-07T10:00+09:00")
        );

        let afternoon = at(&cal, "2026-12-07T17:59");
        assert!(cal.is_same_day_open(afternoon));
        assert_eq!(
            show(cal.next_same_day_at(afternoon)).as_deref(),
            Some("2026-12-07T17:59+09:00")
        );

        let evening = at(&cal, "2026-12-07T18:00");
        assert!(cal.is_open(evening));
        assert!(!cal.is_same_day_open(evening));
        assert_eq!(cal.same_day_open_until(evening), None);
        // Tuesday is a closed date: the next window is Wednesday's.
        assert_eq!(
            show(cal.next_same_day_at(evening)).as_deref(),
            Some("2026-12-09T10:00+09:00")
        );
        assert_eq!(cal.same_day_open_until(at(&cal, "2026-12-08T11:00")), None);
        // Still open at 18:00: a pickup is ready in 30 minutes.
        assert_eq!(
            show(cal.ready_by(evening)).as_deref(),
            Some("2026-12-07T18:30+09:00")
        );
        // Too late to prepare before closing: Wednesday at opening plus preparation.
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-12-07T21:45"))).as_deref(),
            Some("2026-12-09T10:30+09:00")
        );
    }

    #[test]
    fn without_a_cut_off_same_day_closes_the_preparation_time_before_closing() {
        let cal = daily("Asia/Seoul", "10:00", "22:00");
        assert!(cal.is_same_day_open(at(&cal, "2026-12-07T21:29")));
        assert!(!cal.is_same_day_open(at(&cal, "2026-12-07T21:30")));
        assert_eq!(
            show(cal.same_day_open_until(at(&cal, "2026-12-07T12:00"))).as_deref(),
            Some("2026-12-07T21:30+09:00")
        );
        assert_eq!(cal.same_day_open_until(at(&cal, "2026-12-07T21:30")), None);
    }

    #[test]
    fn a_lunch_break_keeps_the_day_s_cut_off() {
        let mut s = spec(
            "Asia/Seoul",
            &[("MON", "09:00", "12:00"), ("MON", "13:00", "20:00")],
        );
        s.same_day_cutoff = Some("18:00".into());
        let cal = Calendar::parse(&s).unwrap();
        let lunch = at(&cal, "2026-12-07T12:30");
        assert!(!cal.is_same_day_open(lunch));
        assert_eq!(
            show(cal.same_day_open_until(lunch)).as_deref(),
            Some("2026-12-07T18:00+09:00")
        );
        assert_eq!(
            show(cal.next_same_day_at(lunch)).as_deref(),
            Some("2026-12-07T13:00+09:00")
        );
    }

    #[test]
    fn an_opening_across_midnight_is_one_opening() {
        let cal = calendar(
            "Asia/Seoul",
            &[("MON", "18:00", "24:00"), ("TUE", "00:00", "02:00")],
        );
        assert!(cal.is_open(at(&cal, "2026-12-07T23:59")));
        assert!(cal.is_open(at(&cal, "2026-12-08T00:00")));
        assert!(!cal.is_open(at(&cal, "2026-12-08T02:00")));
        let late = at(&cal, "2026-12-07T23:50");
        // Ready after midnight, in the same opening.
        assert_eq!(
            show(cal.ready_by(late)).as_deref(),
            Some("2026-12-08T00:20+09:00")
        );
        // Same-day stays open until 01:30, reported as the end of Monday on Monday.
        assert!(cal.is_same_day_open(late));
        assert!(cal.is_same_day_open(at(&cal, "2026-12-08T01:29")));
        assert!(!cal.is_same_day_open(at(&cal, "2026-12-08T01:30")));
        assert_eq!(
            show(cal.same_day_open_until(late)).as_deref(),
            Some("2026-12-08T00:00+09:00")
        );
        assert_eq!(
            show(cal.same_day_open_until(at(&cal, "2026-12-08T00:10"))).as_deref(),
            Some("2026-12-08T01:30+09:00")
        );
    }

    #[test]
    fn a_range_closing_at_24_00_without_a_follower_closes_at_midnight() {
        let cal = calendar("Asia/Seoul", &[("SUN", "20:00", "24:00")]);
        let sunday = at(&cal, "2026-12-13T23:40");
        assert!(cal.is_open(sunday));
        assert!(!cal.is_open(at(&cal, "2026-12-14T00:00")));
        assert!(!cal.is_same_day_open(sunday));
        assert_eq!(
            show(cal.ready_by(sunday)).as_deref(),
            Some("2026-12-20T20:30+09:00")
        );
    }

    #[test]
    fn a_closed_date_cuts_an_opening_that_runs_into_it() {
        let mut s = spec(
            "Asia/Seoul",
            &[("MON", "18:00", "24:00"), ("TUE", "00:00", "02:00")],
        );
        s.closed_dates = vec!["2026-12-08".into()];
        let cal = Calendar::parse(&s).unwrap();
        assert!(!cal.is_open(at(&cal, "2026-12-08T00:30")));
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-12-07T23:50"))).as_deref(),
            Some("2026-12-14T18:30+09:00")
        );
    }

    #[test]
    fn new_york_spring_forward_opens_at_the_transition() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let cal = daily("America/New_York", "02:30", "12:00");
        assert!(!cal.is_open(at(&cal, "2026-03-08T01:59")));
        let transition: Timestamp = "2026-03-08T07:00:00Z".parse().unwrap();
        assert!(cal.is_open(transition));
        assert_eq!(
            show(cal.next_same_day_at(at(&cal, "2026-03-08T01:00"))).as_deref(),
            Some("2026-03-08T03:00-04:00")
        );
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-03-08T01:00"))).as_deref(),
            Some("2026-03-08T03:30-04:00")
        );
        // The day before and after, 02:30 exists.
        assert_eq!(
            show(cal.ready_by(at(&cal, "2026-03-09T01:00"))).as_deref(),
            Some("2026-03-09T03:00-04:00")
        );
    }

    #[test]
    fn new_york_fall_back_closes_at_the_first_pass() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00–02:00 happens twice.
        let cal = daily("America/New_York", "00:00", "01:30");
        let first = at(&cal, "2026-11-01T01:15");
        assert!(cal.is_open(first));
        let second = first + SignedDuration::from_hours(1);
        assert_eq!(
            show(Some(second.to_zoned(cal.time_zone().clone()))).as_deref(),
            Some("2026-11-01T01:15-05:00")
        );
        assert!(!cal.is_open(second));
        // A 24-hour day is 25 hours long that day and still ends at local midnight.
        let all_day = daily("America/New_York", "00:00", "24:00");
        let noon = at(&all_day, "2026-11-01T12:00");
        assert_eq!(
            show(all_day.same_day_open_until(noon)).as_deref(),
            Some("2026-11-02T00:00-05:00")
        );
    }

    #[test]
    fn berlin_keeps_wall_clock_hours_across_its_changes() {
        // 2026-03-29 02:00 CET becomes 03:00 CEST; 2026-10-25 03:00 CEST becomes 02:00 CET.
        let cal = daily("Europe/Berlin", "08:00", "20:00");
        for (day, offset) in [
            ("2026-03-28", "+01:00"),
            ("2026-03-29", "+02:00"),
            ("2026-10-24", "+02:00"),
            ("2026-10-25", "+01:00"),
        ] {
            let night = at(&cal, &format!("{day}T01:00"));
            assert!(!cal.is_open(night));
            assert_eq!(
                show(cal.ready_by(night)),
                Some(format!("{day}T08:30{offset}"))
            );
            assert_eq!(
                show(cal.same_day_open_until(night)),
                Some(format!("{day}T19:30{offset}"))
            );
        }
    }
}
