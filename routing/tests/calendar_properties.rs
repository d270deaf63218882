//! Properties of the time-aware decisions, checked against oracles that read local wall-clock
//! time directly (never through the calendar's own instant arithmetic).
//!
//! Calendars are generated in a zone without daylight saving (Asia/Seoul) and in two with it
//! (America/New_York, Europe/Berlin), with zero to two ranges a day, sometimes joined across
//! midnight (`24:00` then `00:00`), sometimes no hours at all, closed dates around `now`, an
//! optional cut-off and a preparation time. `now` is drawn across 2026, half the time within two
//! days of a daylight-saving change.

use jiff::civil::{Date, DateTime};
use jiff::tz::AmbiguousOffset;
use jiff::{SignedDuration, Timestamp, ToSpan};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sf_routing::{
    candidates, candidates_at, eligible, same_day, same_day_closed, Calendar, CalendarSpec,
    Coordinates, Destination, LocationId, LocationIndex, LocationKind, OpeningHoursSpec,
    OrderLines, ProductId, Site,
};
use std::sync::Arc;

const ZONES: [&str; 3] = ["Asia/Seoul", "America/New_York", "Europe/Berlin"];
const DAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
/// 2026's daylight-saving changes in the zones above.
const CHANGES: [&str; 4] = [
    "2026-03-08T07:00:00Z",
    "2026-03-29T01:00:00Z",
    "2026-10-25T01:00:00Z",
    "2026-11-01T06:00:00Z",
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hhmm(quarter_hours: u16) -> String {
    format!("{:02}:{:02}", quarter_hours / 4, quarter_hours % 4 * 15)
}

/// One day's ranges as quarter-hour points: 0, 2 or 4 strictly increasing points in 0..=96.
fn day_points() -> impl Strategy<Value = Vec<u16>> {
    prop_oneof![
        1 => Just(vec![]),
        3 => prop::collection::btree_set(0u16..=96, 2).prop_map(|s| s.into_iter().collect()),
        2 => prop::collection::btree_set(0u16..=96, 4).prop_map(|s| s.into_iter().collect()),
    ]
}

fn now() -> impl Strategy<Value = Timestamp> {
    let year = 1_767_225_600i64..1_798_761_600; // 2026-01-01 .. 2027-01-01 UTC
    let near_change = (0..CHANGES.len(), -172_800i64..172_800)
        .prop_map(|(i, offset)| CHANGES[i].parse::<Timestamp>().unwrap().as_second() + offset);
    prop_oneof![year, near_change].prop_map(|s| Timestamp::from_second(s).unwrap())
}

/// A calendar and the instant it is asked at.
#[derive(Debug, Clone)]
struct Case {
    calendar: Calendar,
    now: Timestamp,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..ZONES.len(),
        prop::bool::weighted(0.15),
        prop::collection::vec(day_points(), 7),
        prop::bool::weighted(0.3),
        prop::collection::vec(-1i64..15, 0..4),
        prop::option::of(0u16..96),
        0i64..=120,
        now(),
    )
        .prop_map(
            |(zone, no_hours, mut week, overnight, closed, cutoff, preparation, now)| {
                if overnight {
                    // Every open day runs from 00:00 to 24:00's edges, so consecutive open days
                    // join across midnight.
                    for points in week.iter_mut().filter(|p| !p.is_empty()) {
                        points[0] = 0;
                        *points.last_mut().unwrap() = 96;
                    }
                }
                let opening_hours = if no_hours {
                    Vec::new()
                } else {
                    week.iter()
                        .zip(DAYS)
                        .flat_map(|(points, day)| {
                            points.chunks(2).map(move |pair| OpeningHoursSpec {
                                day: day.to_owned(),
                                opens: hhmm(pair[0]),
                                closes: hhmm(pair[1]),
                            })
                        })
                        .collect()
                };
                let tz = jiff::tz::TimeZone::get(ZONES[zone]).unwrap();
                let today = tz.to_datetime(now).date();
                let spec = CalendarSpec {
                    time_zone: Some(ZONES[zone].to_owned()),
                    opening_hours,
                    closed_dates: closed
                        .iter()
                        .map(|d| today.checked_add(d.days()).unwrap().to_string())
                        .collect(),
                    same_day_cutoff: cutoff.map(hhmm),
                    pickup_preparation_minutes: Some(preparation),
                };
                Case {
                    calendar: Calendar::parse(&spec).expect("generated calendars are valid"),
                    now,
                }
            },
        )
}

// ------------------------------------------------------------------------------------------------
// Oracles on local wall-clock time
// ------------------------------------------------------------------------------------------------

fn local(cal: &Calendar, t: Timestamp) -> DateTime {
    cal.time_zone().to_datetime(t)
}

/// Whether the local time of `t` is one that occurs only once (not in a fall-back fold), where
/// "open" by wall clock and "open" by instants must agree.
fn unambiguous(cal: &Calendar, t: Timestamp) -> bool {
    matches!(
        cal.time_zone()
            .to_ambiguous_timestamp(local(cal, t))
            .offset(),
        AmbiguousOffset::Unambiguous { .. }
    )
}

fn minutes(s: &str) -> u16 {
    let (h, m) = s.split_once(':').unwrap();
    h.parse::<u16>().unwrap() * 60 + m.parse::<u16>().unwrap()
}

/// By wall clock: not a closed date, and a range of that weekday holds the local time (or no
/// hours at all).
fn open_by_wall_clock(cal: &Calendar, t: Timestamp) -> bool {
    let dt = local(cal, t);
    if cal.is_closed_on(dt.date()) {
        return false;
    }
    let spec = cal.spec();
    if spec.opening_hours.is_empty() {
        return true;
    }
    let day = DAYS[dt.date().weekday().to_monday_zero_offset() as usize];
    let now = dt.hour() as u16 * 60 + dt.minute() as u16;
    spec.opening_hours
        .iter()
        .any(|h| h.day == day && minutes(&h.opens) <= now && now < minutes(&h.closes))
}

/// Open at each whole-minute step from `from` through `until`. Ranges start and end on whole
/// local minutes in these zones, so a closed stretch of a minute or more is always sampled.
fn open_at_every_minute(cal: &Calendar, from: Timestamp, until: Timestamp) -> bool {
    let mut t = from;
    while t < until {
        if !cal.is_open(t) {
            return false;
        }
        t += SignedDuration::from_mins(1);
    }
    cal.is_open(until)
}

fn date_of(cal: &Calendar, t: Timestamp) -> Date {
    local(cal, t).date()
}

proptest! {
    #![proptest_config(config(512))]

    /// `is_open` agrees with the wall clock wherever the wall clock is unambiguous.
    #[test]
    fn is_open_agrees_with_the_wall_clock(case in case()) {
        let Case { calendar: cal, now } = case;
        if unambiguous(&cal, now) {
            prop_assert_eq!(cal.is_open(now), open_by_wall_clock(&cal, now), "{}", local(&cal, now));
        }
    }

    /// `readyBy` lies inside an opening, never on a closed date, at least the preparation time
    /// after `now`, and is exactly `now` + preparation when the store stays open that long.
    #[test]
    fn ready_by_falls_inside_an_opening_and_never_on_a_closed_date(case in case()) {
        let Case { calendar: cal, now } = case;
        let preparation = cal.pickup_preparation();
        let straight = open_at_every_minute(&cal, now, now + preparation);
        match cal.ready_by(now) {
            Some(ready) => {
                let ready = ready.timestamp();
                prop_assert!(ready >= now + preparation);
                prop_assert!(cal.is_open(ready), "ready at {} while closed", local(&cal, ready));
                prop_assert!(!cal.is_closed_on(date_of(&cal, ready)));
                if unambiguous(&cal, ready) {
                    prop_assert!(open_by_wall_clock(&cal, ready), "{}", local(&cal, ready));
                }
                // The preparation happens while open: the store is open all along it.
                prop_assert!(open_at_every_minute(&cal, ready - preparation, ready));
                prop_assert_eq!(ready == now + preparation, straight);
            }
            None => prop_assert!(!straight, "open through the preparation, yet never ready"),
        }
    }

    /// The same-day window is open exactly when the store is open, not on a closed date, and
    /// before the cut-off (or, without one, open through the preparation time).
    #[test]
    fn the_same_day_window_follows_hours_closures_and_cut_off(case in case()) {
        let Case { calendar: cal, now } = case;
        let open = cal.is_same_day_open(now);
        if open {
            prop_assert!(cal.is_open(now));
            prop_assert!(!cal.is_closed_on(date_of(&cal, now)));
        }
        let expected = match cal.same_day_cutoff() {
            Some(cutoff) => {
                let dt = local(&cal, now);
                let before = dt.hour() as u16 * 60 + (dt.minute() as u16) < cutoff.minutes();
                unambiguous(&cal, now).then_some(cal.is_open(now) && before)
            }
            None => Some(open_at_every_minute(&cal, now, now + cal.pickup_preparation())),
        };
        if let Some(expected) = expected {
            prop_assert_eq!(open, expected, "at {}", local(&cal, now));
        }

        match cal.next_same_day_at(now) {
            Some(next) => {
                let next = next.timestamp();
                prop_assert!(next >= now);
                prop_assert!(cal.is_same_day_open(next), "next window at {} is closed", local(&cal, next));
                prop_assert_eq!(next == now, open);
            }
            None => prop_assert!(!open),
        }
        match cal.same_day_open_until(now) {
            Some(until) => prop_assert!(until.timestamp() > now),
            None => prop_assert!(!open, "open now, yet closed for the day"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Ranking
// ------------------------------------------------------------------------------------------------

/// Up to 40 stores within a few kilometres of central Seoul, each with a calendar or none, and
/// every one stocked with 3 of products 1 and 2 unless `short`.
fn stores() -> impl Strategy<Value = (Vec<Site>, Timestamp)> {
    (
        prop::collection::vec(
            (
                37.45..37.65f64,
                126.9..127.1f64,
                prop::option::weighted(0.7, case()),
            ),
            1..40,
        ),
        now(),
    )
        .prop_map(|(specs, now)| {
            let sites = specs
                .into_iter()
                .enumerate()
                .map(|(i, (lat, lon, case))| Site {
                    id: LocationId::new_unchecked(i as u64 + 1),
                    kind: LocationKind::Store,
                    name: format!("store {}", i + 1),
                    coordinates: Coordinates::new(lat, lon).unwrap(),
                    calendar: case.map(|c| Arc::new(c.calendar)),
                })
                .collect();
            (sites, now)
        })
}

fn stocked(short: u64) -> impl Fn(LocationId, ProductId) -> Option<i64> {
    move |location, _| Some(if location.get() % short == 0 { 0 } else { 3 })
}

fn seoul() -> Coordinates {
    Coordinates::new(37.5665, 126.9780).unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    /// A store outside its same-day window is never a same-day candidate, so never chosen;
    /// every store in the radius is in exactly one of the two lists; and the closed answer's
    /// `nextSameDayAt` is the earliest window among the stores it is given.
    #[test]
    fn a_store_outside_its_window_is_never_chosen_for_same_day(
        (sites, now) in stores(),
        radius_km in 0.5..20.0f64,
        short in 2u64..6,
    ) {
        let index = LocationIndex::new(sites.iter().cloned());
        let lines = OrderLines::parse([(1, 2), (2, 1)]).unwrap();
        let destination = Destination::SameDay { address: seoul(), radius_km };
        let ranked = candidates_at(&index, &destination, now).unwrap();
        let open = |id: LocationId| {
            index.get(id).unwrap().calendar.as_ref().is_none_or(|c| c.is_same_day_open(now))
        };
        for c in &ranked {
            prop_assert!(open(c.location), "store {} is outside its window", c.location);
        }
        if let Some(first) = eligible(&ranked, &lines, stocked(short)).first() {
            prop_assert!(open(first.location));
        }

        let split = same_day(&index, seoul(), radius_km, now);
        prop_assert_eq!(&split.in_window, &ranked);
        let mut all: Vec<u64> = split.in_window.iter().chain(&split.outside_window)
            .map(|c| c.location.get()).collect();
        all.sort_unstable();
        let mut within: Vec<u64> = index.within(LocationKind::Store, seoul(), radius_km)
            .iter().map(|c| c.location.get()).collect();
        within.sort_unstable();
        prop_assert_eq!(all, within);
        for c in &split.outside_window {
            prop_assert!(!open(c.location));
        }

        let stocked_outside = eligible(&split.outside_window, &lines, stocked(short));
        match same_day_closed(&index, &stocked_outside, now) {
            None => prop_assert!(stocked_outside.is_empty()),
            Some(closed) => {
                prop_assert_eq!(closed.alternatives.len(), stocked_outside.len());
                let earliest = stocked_outside.iter()
                    .filter_map(|c| index.get(c.location).unwrap().calendar().next_same_day_at(now))
                    .map(|z| z.timestamp())
                    .min();
                prop_assert_eq!(closed.next_same_day_at.map(|z| z.timestamp()), earliest);
                for a in &closed.alternatives {
                    if let Some(ready) = &a.ready_by {
                        let cal = index.get(a.candidate.location).unwrap().calendar();
                        prop_assert!(cal.is_open(ready.timestamp()));
                    }
                }
            }
        }
    }

    /// Locations without a calendar, or with the default one, rank exactly as without a clock.
    #[test]
    fn without_hours_every_answer_is_as_before(
        (sites, now) in stores(),
        radius_km in 0.0..50.0f64,
        store in 1u64..45,
        default_calendar in any::<bool>(),
    ) {
        let plain: Vec<Site> = sites.into_iter().map(|mut s| {
            s.calendar = default_calendar.then(|| Arc::new(Calendar::default()));
            s
        }).collect();
        let index = LocationIndex::new(plain);
        let store = LocationId::new_unchecked(store);
        for destination in [
            Destination::SameDay { address: seoul(), radius_km },
            Destination::Normal { address: seoul() },
            Destination::Pickup { store, address: Some(seoul()) },
            Destination::InStore { store },
        ] {
            prop_assert_eq!(
                candidates_at(&index, &destination, now),
                candidates(&index, &destination)
            );
        }
        prop_assert!(same_day(&index, seoul(), radius_km, now).outside_window.is_empty());
    }
}
