//! Locations carry their calendar: operators set it with the create and `PATCH` routes, every
//! answer shows it with its defaults filled in, a refused calendar changes nothing, and
//! `openNow` / `sameDayOpenUntil` follow the real clock in the location's zone.
//!
//! The clock-dependent tests put their stores in the `Etc/GMT±N` zone where it is now around
//! midday (12:00 to 13:59 for the whole test), and give them hours hours away from that, so
//! they hold at any time of day.

use crate::common::*;
use chrono::{Duration as Days, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A zone where it is now 12:xx local time: its name, its offset as answers show it (`+03:00`),
/// and today's and tomorrow's local dates (`YYYY-MM-DD`).
struct Midday {
    zone: String,
    offset: String,
    today: String,
    tomorrow: String,
}

impl Midday {
    fn now() -> Self {
        let now = Utc::now();
        // UTC+12 down to UTC-11: every zone exists as `Etc/GMT∓N` (the sign is POSIX's, reversed).
        let hours = 12 - now.hour() as i64;
        let zone = match hours {
            0 => "Etc/GMT".to_owned(),
            h if h > 0 => format!("Etc/GMT-{h}"),
            h => format!("Etc/GMT+{}", -h),
        };
        let sign = if hours < 0 { '-' } else { '+' };
        let local = now + Days::hours(hours);
        Self {
            zone,
            offset: format!("{sign}{:02}:00", hours.abs()),
            today: local.date_naive().to_string(),
            tomorrow: (local + Days::days(1)).date_naive().to_string(),
        }
    }

    /// An instant today at `hh_mm` local, as answers show it.
    fn today_at(&self, hh_mm: &str) -> String {
        format!("{}T{hh_mm}:00{}", self.today, self.offset)
    }
}

/// The same range on every day of the week.
fn every_day(opens: &str, closes: &str) -> Value {
    ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
        .iter()
        .map(|d| json!({"day": d, "opens": opens, "closes": closes}))
        .collect()
}

/// A location as `GET /api/locations` lists it.
async fn listed(t: &TestApp, id: u64) -> Value {
    let (s, b) = json_of(t.get("/api/locations").await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["locationId"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("location {id} not listed: {b}"))
}

/// Creates a location through the admin API; `extra` adds fields (the calendar).
async fn create(
    t: &TestApp,
    kind: &str,
    name: &str,
    lat: f64,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body =
        json!({"locationType": kind, "name": name, "latitude": lat, "longitude": 126.978});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json_of(t.admin().post("/api/admin/locations", &body).await).await
}

async fn patch(t: &TestApp, id: u64, body: Value) -> (StatusCode, Value) {
    json_of(
        t.admin()
            .patch(&format!("/api/admin/locations/{id}"), &body)
            .await,
    )
    .await
}

async fn stored_calendar(t: &TestApp, id: u64) -> Option<String> {
    sqlx::query_scalar("SELECT CAST(calendar AS CHAR) FROM locations WHERE id = ?")
        .bind(id)
        .fetch_one(&t.db)
        .await
        .unwrap()
}

/// A calendar set on create comes back tidied (ranges by day, dates in order, defaults filled
/// in) from the create answer, the shop's list and the operators' routes; a `PATCH` replaces
/// only the fields it sends; a calendar set back to the default is stored as none at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_round_trips_through_create_patch_and_the_lists() {
    let t = TestApp::spawn().await;
    let m = Midday::now();
    let days = ["SUN", "SAT", "FRI", "THU", "WED", "TUE", "MON"];
    let (s, created) = create(
        &t,
        "STORE",
        "Euljiro",
        37.566,
        json!({
            "timeZone": m.zone,
            "openingHours": days
                .iter()
                .map(|d| json!({"day": d, "opens": "10:00", "closes": "16:00"}))
                .collect::<Value>(),
            "closedDates": ["2030-01-02", "2029-12-31", "2030-01-02"],
            "sameDayCutoff": "15:00",
            "pickupPreparationMinutes": 45,
        }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["locationId"].as_u64().unwrap();
    let calendar = json!({
        "timeZone": m.zone,
        "openingHours": every_day("10:00", "16:00"),
        "closedDates": ["2029-12-31", "2030-01-02"],
        "sameDayCutoff": "15:00",
        "pickupPreparationMinutes": 45,
    });
    let mut expected = json!({
        "locationId": id, "locationType": "STORE", "name": "Euljiro",
        "latitude": 37.566, "longitude": 126.978, "active": true, "safetyStock": 0,
        "lowStockThreshold": 0,
    });
    let whole = |expected: &Value, calendar: &Value, live: &Value| {
        let mut v = expected.clone();
        let o = v.as_object_mut().unwrap();
        o.extend(calendar.as_object().unwrap().clone());
        o.extend(live.as_object().unwrap().clone());
        v
    };
    // Midday: open, before the 15:00 cut-off.
    let live = json!({"openNow": true, "sameDayOpenUntil": m.today_at("15:00")});
    assert_eq!(created, whole(&expected, &calendar, &live));
    assert_eq!(listed(&t, id).await, created);
    let (s, admin) = json_of(t.admin().get(&format!("/api/admin/locations/{id}")).await).await;
    assert_eq!((s, &admin), (StatusCode::OK, &created));

    // Only what is sent changes: the dates go, the cut-off goes (same-day then ends at the
    // closing time minus the preparation), the name changes with them.
    let (s, b) = patch(
        &t,
        id,
        json!({"name": "Euljiro 1-ga", "closedDates": [], "sameDayCutoff": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    expected["name"] = json!("Euljiro 1-ga");
    let mut calendar = calendar;
    calendar["closedDates"] = json!([]);
    calendar.as_object_mut().unwrap().remove("sameDayCutoff");
    let live = json!({"openNow": true, "sameDayOpenUntil": m.today_at("15:15")});
    assert_eq!(b, whole(&expected, &calendar, &live));
    assert_eq!(listed(&t, id).await, b);

    // `openingHours: []`: open around the clock again; same-day runs to the end of the day.
    let (s, b) = patch(
        &t,
        id,
        json!({"openingHours": [], "pickupPreparationMinutes": 30}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    calendar["openingHours"] = json!([]);
    calendar["pickupPreparationMinutes"] = json!(30);
    let live = json!({"openNow": true, "sameDayOpenUntil": format!("{}T00:00:00{}", m.tomorrow, m.offset)});
    assert_eq!(b, whole(&expected, &calendar, &live));
    assert!(
        stored_calendar(&t, id).await.is_some(),
        "its own zone is still a calendar"
    );

    // Back to the default zone: nothing left of its own, stored as none, like a location
    // created without a calendar.
    let (s, b) = patch(&t, id, json!({"timeZone": "Asia/Seoul"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["timeZone"], "Asia/Seoul");
    assert_eq!(stored_calendar(&t, id).await, None);

    // A location created without a calendar shows the defaults; a warehouse has no same-day.
    let (s, wh) = create(&t, "WAREHOUSE", "Icheon", 37.28, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{wh}");
    let wid = wh["locationId"].as_u64().unwrap();
    assert_eq!(
        wh,
        json!({
            "locationId": wid, "locationType": "WAREHOUSE", "name": "Icheon",
            "latitude": 37.28, "longitude": 126.978, "active": true, "safetyStock": 0,
            "lowStockThreshold": 0, "timeZone": "Asia/Seoul", "openingHours": [], "closedDates": [],
            "pickupPreparationMinutes": 30, "openNow": true,
        })
    );
    assert_eq!(stored_calendar(&t, wid).await, None);
    assert_eq!(listed(&t, wid).await, wh);
}

/// Each rule a calendar can break answers 422 with a `detail` naming the field and the value,
/// on create and on `PATCH`; nothing is created, and nothing of the `PATCH` (not even the name
/// sent with it) is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_calendar_mistake_is_a_422_naming_the_field_and_changes_nothing() {
    let t = TestApp::spawn().await;
    let m = Midday::now();
    let (s, store) = create(
        &t,
        "STORE",
        "Euljiro",
        37.566,
        json!({"timeZone": m.zone, "openingHours": every_day("10:00", "16:00"),
               "closedDates": ["2030-01-01"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{store}");
    let id = store["locationId"].as_u64().unwrap();
    let before_row = stored_calendar(&t, id).await;
    let (_, before_list) = json_of(t.admin().get("/api/admin/locations").await).await;

    let mon = |opens: &str, closes: &str| json!({"day": "MON", "opens": opens, "closes": closes});
    let cases = [
        (
            json!({"timeZone": "Mars/Olympus"}),
            r#"timeZone: "Mars/Olympus" is not a known IANA time zone"#,
        ),
        (
            json!({"openingHours": [mon("10:00", "18:00"), mon("9:00", "10:00")]}),
            r#"openingHours[1].opens: "9:00" is not a time HH:MM (00:00 to 23:59)"#,
        ),
        (
            json!({"openingHours": [mon("10:00", "25:00")]}),
            r#"openingHours[0].closes: "25:00" is not a time HH:MM (00:01 to 24:00)"#,
        ),
        (
            json!({"openingHours": [mon("18:00", "10:00")]}),
            "openingHours[0]: closes 10:00 is not after opens 18:00",
        ),
        (
            json!({"openingHours": [mon("13:00", "18:00"), mon("10:00", "14:00")]}),
            "openingHours: two ranges of MON overlap: 10:00–14:00 and 13:00–18:00",
        ),
        (
            json!({"closedDates": ["2030-01-01", "2030-02-30"]}),
            r#"closedDates[1]: "2030-02-30" is not a date YYYY-MM-DD"#,
        ),
        (
            json!({"closedDates": ["01/01/2030"]}),
            r#"closedDates[0]: "01/01/2030" is not a date YYYY-MM-DD"#,
        ),
        (
            json!({"sameDayCutoff": "6pm"}),
            r#"sameDayCutoff: "6pm" is not a time HH:MM (00:00 to 23:59)"#,
        ),
    ];
    for (calendar, detail) in &cases {
        let (s, b) = create(&t, "STORE", "Refused", 37.57, calendar.clone()).await;
        assert_eq!(
            (s, b["type"].as_str(), b["detail"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("/problems/validation-error"),
                Some(*detail)
            ),
            "create with {calendar}: {b}"
        );
        assert_eq!(b["status"], 422);

        let mut change = calendar.clone();
        change["name"] = json!("Renamed");
        let (s, b) = patch(&t, id, change).await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(*detail)),
            "patch with {calendar}: {b}"
        );
    }
    let (_, after_list) = json_of(t.admin().get("/api/admin/locations").await).await;
    assert_eq!(after_list, before_list, "nothing created, nothing changed");
    assert_eq!(stored_calendar(&t, id).await, before_row);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM locations")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

/// `openNow` and `sameDayOpenUntil` as the real clock puts them, in the shop's list and the
/// nearby-stores answer: open and before the cut-off; open and past it; not open yet but with
/// same-day later today; closed today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_now_and_same_day_open_until_follow_the_clock_in_the_zone() {
    let t = TestApp::spawn().await;
    let m = Midday::now();
    let zone = json!({"timeZone": m.zone});
    let with = |extra: Value| {
        let mut v = zone.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let from = t.add_location("STORE", "From", 37.5665, 126.978).await;
    let mut stores = Vec::new();
    for (i, (calendar, open_now, until)) in [
        (
            with(json!({"openingHours": every_day("10:00", "16:00"), "sameDayCutoff": "15:00"})),
            true,
            Some(m.today_at("15:00")),
        ),
        (
            with(json!({"openingHours": every_day("10:00", "16:00"), "sameDayCutoff": "11:00"})),
            true,
            None,
        ),
        (
            with(json!({"openingHours": every_day("15:00", "20:00")})),
            false,
            Some(m.today_at("19:30")),
        ),
        (
            with(json!({"openingHours": every_day("10:00", "16:00"), "closedDates": [m.today]})),
            false,
            None,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let lat = 37.567 + i as f64 * 0.001;
        let (s, b) = create(&t, "STORE", &format!("S{i}"), lat, calendar).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["locationId"].as_u64().unwrap();
        let mut live = json!({"openNow": open_now});
        if let Some(until) = &until {
            live["sameDayOpenUntil"] = json!(until);
        }
        stores.push((id, live));
    }
    let product = t.add_product(1_000).await;
    for (n, (id, _)) in stores.iter().enumerate() {
        t.stock_row(*id, product, n as i64 + 1).await;
    }

    for (id, live) in &stores {
        let b = listed(&t, *id).await;
        assert_eq!(
            (&b["openNow"], &b["sameDayOpenUntil"]),
            (&live["openNow"], &live["sameDayOpenUntil"]),
            "{b}"
        );
    }
    let (s, b) = json_of(
        t.get(&format!("/api/stores/{from}/products/{product}/nearby"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let nearby: Vec<Value> = b["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({"storeId": s["storeId"], "openNow": s["openNow"],
                   "sameDayOpenUntil": s["sameDayOpenUntil"]})
        })
        .collect();
    let expected: Vec<Value> = stores
        .iter()
        .map(|(id, live)| {
            json!({"storeId": id, "openNow": live["openNow"],
                   "sameDayOpenUntil": live["sameDayOpenUntil"]})
        })
        .collect();
    assert_eq!(nearby, expected, "{b}");
}

/// A calendar changed through one instance reaches another within its refresh of the locations
/// (every 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_change_reaches_another_instance() {
    let t = TestApp::spawn().await;
    let id = t.add_location("STORE", "Euljiro", 37.566, 126.991).await;
    let second = t.spawn_instance(|_| {}).await;
    let (s, b) = patch(
        &t,
        id,
        json!({"closedDates": ["2030-05-05"], "sameDayCutoff": "18:00"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let url = format!("{}/api/locations", second.base());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list: Value = t
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seen = list["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["locationId"] == id)
            .cloned()
            .unwrap();
        if seen["closedDates"] == json!(["2030-05-05"]) {
            assert_eq!(seen["sameDayCutoff"], "18:00", "{seen}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second instance never saw the change: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
