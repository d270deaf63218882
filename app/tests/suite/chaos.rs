//! Chaos: many concurrent clients on every write path (Redis-path and DB-lock orders, cancels on
//! both paths, POS sales and returns, operators' stock changes, counts and store hours,
//! fulfilment steps: pickups made ready and collected with their code, same-day orders
//! dispatched, warehouse orders shipped; checkout holds placed, turned into orders, released or
//! left to expire; two sales channels, each reading and cancelling only its own orders, and keyed
//! orders retried on the other order path) against three instances of the service — two in this
//! process, one the service binary as a process of its own — while a fault schedule drawn from a
//! seeded RNG loses replies, cuts connections, slows down and takes away MySQL and Redis, kills
//! Redis (and wipes it), stops consumers, pauses (`SIGSTOP`) and kills the service process, and
//! makes the webhook endpoint every event goes to answer errors or slowly. Afterwards the full
//! history of requests and answers is checked against every invariant, the outbox against MySQL
//! (I11), and the deliveries against the outbox (I12).
//!
//! - `SF_CHAOS_SEED` replays a run: the seed is printed at the start, and it draws the fault
//!   schedule and every client's choices (their timing, and so the interleaving, still varies).
//! - `SF_CHAOS_SECS` sets how long the load runs (default [`DEFAULT_SECS`]); `ops/chaos` runs a
//!   campaign of long runs with different seeds.
//! - `SF_CHAOS_SKIP` leaves faults out: a comma-separated list of parts of their names (see
//!   [`fault_schedule`]), e.g. `flush,wipe` for no Redis data loss.
//! - The history (requests, answers and faults, one JSON object a line) is written to
//!   `target/tmp/chaos/seed-<seed>.jsonl` before the checks, for a failing run to be read.

use crate::common::proxy::Proxy;
use crate::common::webhooks::*;
use crate::common::*;
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of load when `SF_CHAOS_SECS` is not set: short enough for the whole suite.
const DEFAULT_SECS: u64 = 20;
/// Concurrent clients.
const CLIENTS: usize = 24;
/// A MySQL `COMMIT` command packet (as in `faults.rs`).
const COMMIT: &[u8] = b"\x07\x00\x00\x00\x03COMMIT";
/// Index of the service process in [`Shared::bases`].
const PROCESS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Path {
    Redis,
    DbLock,
    Pos,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Redis => "REDIS",
            Path::DbLock => "DB_LOCK",
            Path::Pos => "POS",
        }
    }

    fn of(s: &str) -> Option<Path> {
        match s {
            "REDIS" => Some(Path::Redis),
            "DB_LOCK" => Some(Path::DbLock),
            "POS" => Some(Path::Pos),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Op {
    Create(Path),
    Cancel(Path),
    Status,
    SetStock,
    Adjust,
    /// An operator changes a store's hours.
    Hours,
    Fulfil(Step),
    Hold(HoldStep),
    /// A channel reads another channel's order: must never be answered 2xx.
    Foreign,
}

/// What a checkout does with a hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum HoldStep {
    Place,
    /// Turned into an order (`POST …/order`).
    Convert,
    Release,
}

/// A fulfilment step, each on the route of its delivery type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Step {
    /// A pickup ready (the store's key).
    Ready,
    /// A ready pickup collected with its code (the store's key).
    Collect,
    /// A same-day order dispatched (the store's key).
    Dispatch,
    /// A warehouse order shipped (the operator).
    Ship,
}

impl Step {
    /// The order's `fulfillment.status` once the step is taken.
    fn target(self) -> &'static str {
        match self {
            Step::Ready => "READY_FOR_PICKUP",
            Step::Collect => "COLLECTED",
            Step::Dispatch => "DISPATCHED",
            Step::Ship => "SHIPPED",
        }
    }

    fn hands_over(self) -> bool {
        self != Step::Ready
    }
}

/// Whether an order's `fulfillment.status` is a hand-over: its units have left the building.
fn handed_over(fulfillment: &str) -> bool {
    matches!(fulfillment, "COLLECTED" | "DISPATCHED" | "SHIPPED")
}

/// The hand-over a delivery type ends in.
fn hand_over_of(delivery_type: &str) -> Option<&'static str> {
    match delivery_type {
        "PICKUP" => Some("COLLECTED"),
        "SAME_DAY" => Some("DISPATCHED"),
        "NORMAL" => Some("SHIPPED"),
        _ => None,
    }
}

/// One request of the history and its answer (`status` 0: no answer).
struct Rec {
    client: usize,
    at_ms: u64,
    took_ms: u64,
    target: usize,
    op: Op,
    url: String,
    idem: Option<String>,
    /// The order a cancel or status request is about.
    order: Option<String>,
    /// The sales channel whose key the request sent.
    channel: Option<u64>,
    status: u16,
    body: Value,
}

impl Rec {
    fn json(&self) -> Value {
        json!({
            "client": self.client, "atMs": self.at_ms, "tookMs": self.took_ms,
            "target": self.target, "op": format!("{:?}", self.op), "url": self.url,
            "idempotencyKey": self.idem, "order": self.order, "channel": self.channel,
            "status": self.status,
            "body": self.body,
        })
    }
}

/// The fixtures: locations, products and the stores' POS keys.
struct World {
    warehouses: Vec<u64>,
    /// Store id and its POS key.
    stores: Vec<(u64, String)>,
    products: Vec<u64>,
    /// Products with little stock, sold out and restocked again and again.
    hot: Vec<u64>,
    /// Two sales channels: id and key.
    channels: Vec<(u64, String)>,
}

impl World {
    fn locations(&self) -> Vec<u64> {
        self.warehouses
            .iter()
            .copied()
            .chain(self.stores.iter().map(|s| s.0))
            .collect()
    }

    fn key_of(&self, store: u64) -> &str {
        &self.stores.iter().find(|s| s.0 == store).unwrap().1
    }

    fn channel_of_key(&self, key: &str) -> Option<u64> {
        self.channels.iter().find(|c| c.1 == key).map(|c| c.0)
    }
}

/// An order answered 2xx, for cancels and status look-ups (`store`: a POS sale's store).
#[derive(Clone)]
struct Placed {
    id: String,
    path: Path,
    store: Option<u64>,
    /// An online order's channel (index in [`World::channels`]).
    channel: usize,
}

/// An online order answered 2xx and not cancelled by the clients, on its way out: what its next
/// step needs.
#[derive(Clone)]
struct Outbound {
    id: String,
    /// `PICKUP`, `SAME_DAY` or `NORMAL`.
    delivery_type: String,
    /// Its fulfilment location (a store for a pickup or a same-day order).
    location: u64,
    pickup_code: Option<String>,
    /// A ready step was answered 200: the next step is the collect.
    ready: bool,
}

/// What the clients share.
struct Shared {
    http: Client,
    /// The main instance, the second instance, the service process (on a new port after each
    /// restart).
    bases: Mutex<Vec<String>>,
    process_up: AtomicBool,
    world: World,
    started: Instant,
    deadline: Instant,
    history: Mutex<Vec<Rec>>,
    online: Mutex<Vec<Placed>>,
    pos: Mutex<Vec<Placed>>,
    /// Online orders to take their next fulfilment step.
    outbound: Mutex<Vec<Outbound>>,
    /// Problems seen while the load runs (wrong error bodies, unexpected statuses, hangs).
    violations: Mutex<Vec<String>>,
}

impl Shared {
    fn violation(&self, v: String) {
        eprintln!("VIOLATION: {v}");
        self.violations.lock().unwrap().push(v);
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Main instance 45%, second 40%, the process 15% (while it runs).
    fn pick_target(&self, rng: &mut StdRng) -> usize {
        match rng.gen_range(0..100) {
            0..=14 if self.process_up.load(Ordering::SeqCst) => PROCESS,
            0..=54 => 1,
            _ => 0,
        }
    }

    /// Sends one request and records it with its answer: status, body (JSON, or the text) and
    /// `Retry-After` in seconds. Every error answer must be `application/problem+json` whose
    /// `status` is the HTTP status.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        client: usize,
        target: usize,
        op: Op,
        method: Method,
        url: String,
        body: Option<&Value>,
        bearer: Option<&str>,
        idem: Option<&str>,
        order: Option<&str>,
    ) -> (u16, Value, Option<u64>) {
        let at_ms = self.ms();
        let base = self.bases.lock().unwrap()[target].clone();
        let mut req = self
            .http
            .request(method.clone(), format!("{base}{url}"))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = bearer {
            req = req.bearer_auth(k);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let (status, answer, retry) = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                match r.text().await {
                    Ok(text) => {
                        let answer =
                            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text));
                        if status >= 400 {
                            if ct != "application/problem+json" {
                                self.violation(format!(
                                    "{status} answer to {method} {url} is {ct:?}, not a problem: {answer}"
                                ));
                            } else if answer["status"] != status {
                                self.violation(format!(
                                    "{status} answer to {method} {url} says status {}",
                                    answer["status"]
                                ));
                            }
                        }
                        (status, answer, retry)
                    }
                    Err(e) => (0, Value::String(format!("answer cut: {status}: {e}")), None),
                }
            }
            Err(e) => (0, Value::String(format!("no answer: {e}")), None),
        };
        if status == 0 && target != PROCESS {
            self.violation(format!(
                "{method} {url} to instance {target} got no answer: {answer}"
            ));
        }
        self.history.lock().unwrap().push(Rec {
            client,
            at_ms,
            took_ms: self.ms() - at_ms,
            target,
            op,
            url,
            idem: idem.map(str::to_owned),
            order: order.map(str::to_owned),
            channel: bearer.and_then(|b| self.world.channel_of_key(b)),
            status,
            body: answer.clone(),
        });
        (status, answer, retry)
    }
}

/// How long a client waits before it retries: the `Retry-After` (at most 1 s), else 100–500 ms.
fn backoff(retry_after: Option<u64>, rng: &mut StdRng) -> Duration {
    match retry_after {
        Some(s) => Duration::from_secs(s.min(1)),
        None => Duration::from_millis(rng.gen_range(100..500)),
    }
}

/// One or two lines, mostly of the hot products.
fn random_items(world: &World, rng: &mut StdRng) -> Vec<(u64, i64)> {
    let mut items: Vec<(u64, i64)> = Vec::new();
    let lines = if rng.gen_bool(0.7) { 1 } else { 2 };
    while items.len() < lines {
        let p = if rng.gen_bool(0.6) {
            world.hot[rng.gen_range(0..world.hot.len())]
        } else {
            world.products[rng.gen_range(0..world.products.len())]
        };
        if items.iter().all(|(q, _)| *q != p) {
            items.push((p, rng.gen_range(1..=3)));
        }
    }
    items
}

/// Places one order on `path`, retrying with its `Idempotency-Key` (when it has one) while the
/// outcome is unknown; a keyed order answered 2xx is sometimes sent once more (a replay).
async fn place(sh: &Shared, client: usize, rng: &mut StdRng, path: Path, n: usize) {
    let w = &sh.world;
    let items = random_items(w, rng);
    let channel = rng.gen_range(0..w.channels.len());
    let (url, body, store) = match path {
        Path::Redis | Path::DbLock => {
            let body = match rng.gen_range(0..4) {
                0 | 1 => normal_order(
                    &items,
                    rng.gen_range(37.45..37.65),
                    rng.gen_range(126.85..127.10),
                ),
                2 => same_day_order(&items),
                _ => pickup_order(&items, w.stores[rng.gen_range(0..w.stores.len())].0),
            };
            let url = if path == Path::Redis {
                "/api/redis/orders"
            } else {
                "/api/orders"
            };
            (url.to_owned(), body, None)
        }
        Path::Pos => {
            let store = w.stores[rng.gen_range(0..w.stores.len())].0;
            (
                format!("/api/stores/{store}/orders"),
                pos_sale(&items),
                Some(store),
            )
        }
    };
    let bearer = match store {
        Some(s) => Some(w.key_of(s)),
        None => Some(w.channels[channel].1.as_str()),
    };
    let idem = rng.gen_bool(0.5).then(|| format!("c{client}-{n}"));
    // A keyed online order's retry sometimes takes the other path: one key is one order on both.
    let (mut path, mut url) = (path, url);
    for attempt in 0..6 {
        if attempt > 0 && path != Path::Pos && rng.gen_bool(0.3) {
            (path, url) = match path {
                Path::Redis => (Path::DbLock, "/api/orders".to_owned()),
                _ => (Path::Redis, "/api/redis/orders".to_owned()),
            };
        }
        let target = sh.pick_target(rng);
        let (s, b, retry) = sh
            .send(
                client,
                target,
                Op::Create(path),
                Method::POST,
                url.clone(),
                Some(&body),
                bearer,
                idem.as_deref(),
                None,
            )
            .await;
        match s {
            201 | 202 => {
                let Some(id) = b["orderId"].as_str() else {
                    sh.violation(format!("{s} answer without orderId: {b}"));
                    return;
                };
                let placed = Placed {
                    id: id.to_owned(),
                    // A replay across paths answers the order of the path that placed it.
                    path: b["path"].as_str().and_then(Path::of).unwrap_or(path),
                    store,
                    channel,
                };
                match path {
                    Path::Pos => sh.pos.lock().unwrap().push(placed),
                    _ => {
                        sh.online.lock().unwrap().push(placed);
                        outbound_of(sh, id, &b);
                    }
                }
                if idem.is_some() && rng.gen_bool(0.2) {
                    let target = sh.pick_target(rng);
                    sh.send(
                        client,
                        target,
                        Op::Create(path),
                        Method::POST,
                        url.clone(),
                        Some(&body),
                        bearer,
                        idem.as_deref(),
                        None,
                    )
                    .await;
                }
                return;
            }
            0 | 500 | 503 | 504 if idem.is_some() => {
                tokio::time::sleep(backoff(retry, rng)).await;
            }
            _ => return,
        }
    }
}

/// Puts an online order answered 2xx (`answer`) on the list of orders to take out.
fn outbound_of(sh: &Shared, id: &str, answer: &Value) {
    let delivery_type = answer["deliveryType"].as_str().unwrap_or_default();
    let pickup_code = answer["fulfillment"]["pickupCode"]
        .as_str()
        .map(str::to_owned);
    let Some(location) = answer["fulfillmentLocationId"].as_u64() else {
        sh.violation(format!(
            "order answer without fulfillmentLocationId: {answer}"
        ));
        return;
    };
    if hand_over_of(delivery_type).is_none() || (delivery_type == "PICKUP") != pickup_code.is_some()
    {
        sh.violation(format!(
            "order answer with delivery type {delivery_type:?} and pickup code {pickup_code:?}: {answer}"
        ));
        return;
    }
    sh.outbound.lock().unwrap().push(Outbound {
        id: id.to_owned(),
        delivery_type: delivery_type.to_owned(),
        location,
        pickup_code,
        ready: false,
    });
}

/// Cancels (or returns) an order placed earlier, sometimes sending the cancel several times at
/// once.
async fn cancel(sh: &Shared, client: usize, rng: &mut StdRng, pos: bool) {
    let picked = {
        let mut list = if pos {
            sh.pos.lock().unwrap()
        } else {
            sh.online.lock().unwrap()
        };
        if list.is_empty() {
            return;
        }
        let i = rng.gen_range(0..list.len());
        // Mostly taken off the list: most orders are cancelled at most once (in one go).
        if rng.gen_bool(0.7) {
            list.swap_remove(i)
        } else {
            list[i].clone()
        }
    };
    // An order the clients cancel takes no further step from them (one whose step is already on
    // its way races the cancel, as a store and a customer would).
    if !pos {
        sh.outbound.lock().unwrap().retain(|o| o.id != picked.id);
    }
    let url = match picked.path {
        Path::Redis => format!("/api/redis/orders/{}/cancel", picked.id),
        Path::DbLock => format!("/api/orders/{}/cancel", picked.id),
        Path::Pos => format!(
            "/api/stores/{}/orders/{}/cancel",
            picked.store.unwrap(),
            picked.id
        ),
    };
    let bearer = match picked.store {
        Some(s) => sh.world.key_of(s),
        None => sh.world.channels[picked.channel].1.as_str(),
    };
    let bearer = Some(bearer);
    let copies = if rng.gen_bool(0.3) {
        rng.gen_range(2..=5)
    } else {
        1
    };
    let targets: Vec<usize> = (0..copies).map(|_| sh.pick_target(rng)).collect();
    join_all(targets.into_iter().map(|target| {
        sh.send(
            client,
            target,
            Op::Cancel(picked.path),
            Method::PATCH,
            url.clone(),
            None,
            bearer,
            None,
            Some(&picked.id),
        )
    }))
    .await;
}

/// An operator changes a random store's calendar: open around the clock, closed today, or past
/// its same-day cut-off (open all day). Same-day orders then skip it, or find same-day closed.
async fn change_hours(sh: &Shared, client: usize, rng: &mut StdRng) {
    let w = &sh.world;
    let store = w.stores[rng.gen_range(0..w.stores.len())].0;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Seoul").unwrap())
        .date()
        .to_string();
    let all_day: Vec<Value> = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
        .iter()
        .map(|d| json!({"day": d, "opens": "00:00", "closes": "24:00"}))
        .collect();
    let body = match rng.gen_range(0..3) {
        0 => json!({"openingHours": [], "closedDates": [], "sameDayCutoff": null}),
        1 => json!({"openingHours": all_day, "closedDates": [today], "sameDayCutoff": null}),
        _ => json!({"openingHours": all_day, "closedDates": [], "sameDayCutoff": "00:01"}),
    };
    let target = sh.pick_target(rng);
    sh.send(
        client,
        target,
        Op::Hours,
        Method::PATCH,
        format!("/api/admin/locations/{store}"),
        Some(&body),
        Some(ADMIN),
        None,
        None,
    )
    .await;
}

/// An operator adjusts or sets the stock of a random (location, product).
async fn operate(sh: &Shared, client: usize, rng: &mut StdRng) {
    let w = &sh.world;
    if rng.gen_bool(0.1) {
        return change_hours(sh, client, rng).await;
    }
    let locs = w.locations();
    let loc = locs[rng.gen_range(0..locs.len())];
    let p = w.products[rng.gen_range(0..w.products.len())];
    let url = format!("/api/admin/locations/{loc}/products/{p}/stock");
    let target = sh.pick_target(rng);
    if rng.gen_bool(0.65) {
        let mut delta = rng.gen_range(-3..=12);
        if delta == 0 {
            delta = 5;
        }
        sh.send(
            client,
            target,
            Op::Adjust,
            Method::POST,
            format!("{url}/adjustments"),
            Some(&json!({"delta": delta, "reason": "ADJUST"})),
            Some(ADMIN),
            None,
            None,
        )
        .await;
    } else {
        let qty = if w.hot.contains(&p) {
            rng.gen_range(0..=20)
        } else {
            rng.gen_range(40..=200)
        };
        sh.send(
            client,
            target,
            Op::SetStock,
            Method::PUT,
            url,
            Some(&json!({"quantity": qty, "reason": "COUNT"})),
            Some(ADMIN),
            None,
            None,
        )
        .await;
    }
}

/// Takes the next fulfilment step of an online order answered 2xx: a pickup is made ready, then
/// collected with its code; a same-day order is dispatched; a warehouse order shipped. Sometimes
/// the step is sent several times at once. The order may not be persisted yet (409), or be gone
/// with Redis's data (410): it stays on the list until a hand-over is answered 200.
async fn fulfil(sh: &Shared, client: usize, rng: &mut StdRng) {
    let o = {
        let list = sh.outbound.lock().unwrap();
        if list.is_empty() {
            return;
        }
        list[rng.gen_range(0..list.len())].clone()
    };
    let store_route = |what: &str| format!("/api/stores/{}/orders/{}/{what}", o.location, o.id);
    let store_key = || sh.world.key_of(o.location);
    let (step, url, body, bearer) = match o.delivery_type.as_str() {
        "PICKUP" if !o.ready => (Step::Ready, store_route("ready"), None, store_key()),
        "PICKUP" => (
            Step::Collect,
            store_route("collect"),
            Some(json!({"pickupCode": o.pickup_code})),
            store_key(),
        ),
        "SAME_DAY" => (Step::Dispatch, store_route("dispatch"), None, store_key()),
        _ => (
            Step::Ship,
            format!("/api/admin/orders/{}/ship", o.id),
            None,
            ADMIN,
        ),
    };
    let copies = if rng.gen_bool(0.3) {
        rng.gen_range(2..=5)
    } else {
        1
    };
    let targets: Vec<usize> = (0..copies).map(|_| sh.pick_target(rng)).collect();
    let answers = join_all(targets.into_iter().map(|target| {
        sh.send(
            client,
            target,
            Op::Fulfil(step),
            Method::POST,
            url.clone(),
            body.as_ref(),
            Some(bearer),
            None,
            Some(&o.id),
        )
    }))
    .await;
    let done = answers.iter().any(|(s, ..)| *s == 200);
    let gone = answers.iter().any(|(s, ..)| matches!(s, 404 | 410));
    if done || gone {
        let mut list = sh.outbound.lock().unwrap();
        if step.hands_over() || gone {
            list.retain(|x| x.id != o.id);
        } else if let Some(x) = list.iter_mut().find(|x| x.id == o.id) {
            x.ready = true;
        }
    }
}

/// Looks up an order placed earlier.
async fn look_up(sh: &Shared, client: usize, rng: &mut StdRng) {
    let picked = {
        let online = sh.online.lock().unwrap();
        if online.is_empty() {
            return;
        }
        online[rng.gen_range(0..online.len())].clone()
    };
    let target = sh.pick_target(rng);
    let channels = &sh.world.channels;
    // Sometimes the other channel asks: it must not see the order.
    let (op, channel) = if rng.gen_bool(0.2) {
        (Op::Foreign, (picked.channel + 1) % channels.len())
    } else {
        (Op::Status, picked.channel)
    };
    let url = format!("/api/orders/{}", picked.id);
    let (s, b, _) = sh
        .send(
            client,
            target,
            op,
            Method::GET,
            url.clone(),
            None,
            Some(&channels[channel].1),
            None,
            Some(&picked.id),
        )
        .await;
    if op == Op::Foreign && (200..300).contains(&s) {
        sh.violation(format!(
            "channel {} read channel {}'s order: GET {url} answered {s}: {b}",
            channels[channel].0, channels[picked.channel].0
        ));
    }
}

/// A checkout: a hold placed with a short TTL (keyed, retried while its outcome is unknown),
/// then mostly turned into an order (retried the same way: a hold answers its one order), else
/// released or left to expire. An order made from a hold is an online order like the others:
/// cancelled and taken out by the other clients.
async fn checkout(sh: &Shared, client: usize, rng: &mut StdRng, n: usize) {
    let w = &sh.world;
    let items = random_items(w, rng);
    let mut body = match rng.gen_range(0..3) {
        0 => normal_order(
            &items,
            rng.gen_range(37.45..37.65),
            rng.gen_range(126.85..127.10),
        ),
        1 => same_day_order(&items),
        _ => pickup_order(&items, w.stores[rng.gen_range(0..w.stores.len())].0),
    };
    body["ttlSeconds"] = json!(10);
    let idem = format!("h{client}-{n}");
    let channel = rng.gen_range(0..w.channels.len());
    let bearer = Some(w.channels[channel].1.as_str());
    let mut hold_id = None;
    for _ in 0..6 {
        let target = sh.pick_target(rng);
        let (s, b, retry) = sh
            .send(
                client,
                target,
                Op::Hold(HoldStep::Place),
                Method::POST,
                "/api/holds".into(),
                Some(&body),
                bearer,
                Some(&idem),
                None,
            )
            .await;
        match s {
            201 => {
                hold_id = b["holdId"].as_str().map(str::to_owned);
                break;
            }
            0 | 500 | 502..=504 => tokio::time::sleep(backoff(retry, rng)).await,
            _ => return,
        }
    }
    let Some(hold_id) = hold_id else {
        return;
    };
    let (step, url) = match rng.gen_range(0..10) {
        0..=6 => (HoldStep::Convert, format!("/api/holds/{hold_id}/order")),
        7 | 8 => (HoldStep::Release, format!("/api/holds/{hold_id}/release")),
        _ => return,
    };
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    for _ in 0..6 {
        let target = sh.pick_target(rng);
        let (s, b, retry) = sh
            .send(
                client,
                target,
                Op::Hold(step),
                Method::POST,
                url.clone(),
                None,
                bearer,
                None,
                Some(&hold_id),
            )
            .await;
        match s {
            201 => {
                if let Some(id) = b["orderId"].as_str() {
                    sh.online.lock().unwrap().push(Placed {
                        id: id.to_owned(),
                        path: Path::DbLock,
                        store: None,
                        channel,
                    });
                    outbound_of(sh, id, &b);
                }
                return;
            }
            0 | 500 | 502..=504 => tokio::time::sleep(backoff(retry, rng)).await,
            _ => return,
        }
    }
}

async fn run_client(sh: Arc<Shared>, client: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(
        seed.wrapping_add(client as u64 + 1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut n = 0;
    while Instant::now() < sh.deadline {
        n += 1;
        match rng.gen_range(0..100) {
            0..=27 => place(&sh, client, &mut rng, Path::Redis, n).await,
            28..=44 => place(&sh, client, &mut rng, Path::DbLock, n).await,
            45..=58 => place(&sh, client, &mut rng, Path::Pos, n).await,
            59..=69 => cancel(&sh, client, &mut rng, false).await,
            70..=74 => cancel(&sh, client, &mut rng, true).await,
            75..=82 => operate(&sh, client, &mut rng).await,
            83..=92 => fulfil(&sh, client, &mut rng).await,
            93..=96 => checkout(&sh, client, &mut rng, n).await,
            _ => look_up(&sh, client, &mut rng).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..15))).await;
    }
}

/// What the fault schedule did.
#[derive(Default)]
struct Injected {
    /// (ms since the start, what).
    log: Vec<(u64, String)>,
    /// Times Redis lost the test's data (flushed, or a wiped restart).
    data_losses: usize,
    /// When it lost it (ms since the start).
    losses_at: Vec<u64>,
}

impl Injected {
    /// The first data loss at or after `at_ms`, as "<n> ms later".
    fn loss_after(&self, at_ms: u64) -> String {
        match self.losses_at.iter().find(|l| **l + 50 >= at_ms) {
            Some(l) => format!("Redis lost its data {} ms later", *l as i64 - at_ms as i64),
            None => "no data loss after it".into(),
        }
    }
}

/// The servers and instances the fault schedule acts on.
struct Rig {
    redis: PrivateRedis,
    redis_proxy: Proxy,
    mysql_proxy: Proxy,
    second: Instance,
    process: Option<ServiceProcess>,
    /// The webhook endpoint every event goes to.
    receiver: Receiver,
}

const PROCESS_ENV: &[(&str, &str)] = &[
    ("CONSUMER_RECLAIM_IDLE_MS", "2000"),
    ("RECLAIM_SCHEDULE", "*/5 * * * * *"),
    ("RECONCILE_SCHEDULE", "*/10 * * * * *"),
    ("HEALTH_CHECK_MS", "250"),
    ("DB_MAX_CONNECTIONS", "8"),
    ("REDIS_POOL_SIZE", "8"),
    ("MAX_IN_FLIGHT_DB_LOCK", "100000"),
    ("MAX_IN_FLIGHT_REDIS", "100000"),
    ("MAX_IN_FLIGHT_POS", "100000"),
    ("MAX_IN_FLIGHT_READS", "100000"),
    ("DB_CONNECT_TIMEOUT_MS", "10000"),
    ("RUST_LOG", "off"),
    // Webhook retries within the run (as `common::webhooks::quick`).
    ("WEBHOOK_TICK_MS", "50"),
    ("WEBHOOK_RETRY_FIRST_MS", "50"),
    ("WEBHOOK_RETRY_MAX_MS", "400"),
    ("WEBHOOK_LEASE_MS", "2000"),
];

/// Starts the service process and waits (up to 15 s) until it is live; answers whether it is.
async fn start_process(t: &TestApp, http: &Client) -> (ServiceProcess, bool) {
    let p = t.spawn_process(PROCESS_ENV);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("{}/health/live", p.base))
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            if r.status().is_success() {
                return (p, true);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (p, false)
}

/// Script SHAs whose replies the Redis proxy may lose.
fn script_shas() -> Vec<(&'static str, String)> {
    use sf_persistence::scripts::*;
    [
        ("reserve", reserve::SOURCE),
        ("cancel", cancel::SOURCE),
        ("adjust", adjust::SOURCE),
        ("sync", sync::SOURCE),
        ("safety", safety::SOURCE),
        ("ack", ack::SOURCE),
        ("reject", reject::SOURCE),
    ]
    .into_iter()
    .map(|(n, s)| (n, redis::Script::new(s).get_hash().to_owned()))
    .collect()
}

/// Logs a fault (printed, and kept for the history).
fn note(sh: &Shared, injected: &mut Injected, what: String) {
    eprintln!("[chaos {:>6} ms] {what}", sh.ms());
    injected.log.push((sh.ms(), what));
}

/// Injects faults at random times until the deadline; each fault ends (or is repaired) before
/// the next one starts.
async fn fault_schedule(
    seed: u64,
    t: &mut TestApp,
    rig: &mut Rig,
    sh: &Shared,
    injected: &mut Injected,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shas = script_shas();
    let mysql_patterns: &[(&str, &[u8])] = &[
        ("COMMIT", COMMIT),
        ("COMMIT", COMMIT),
        ("INSERT INTO order_lines", b"INSERT INTO order_lines"),
        (
            "INSERT INTO stock_movements",
            b"INSERT INTO stock_movements",
        ),
        ("UPDATE stock", b"UPDATE stock"),
    ];
    // (weight, fault)
    let faults: &[(u32, &str)] = &[
        (14, "lose redis script reply"),
        (10, "lose mysql reply"),
        (5, "cut redis"),
        (5, "cut mysql"),
        (6, "slow redis"),
        (6, "slow mysql"),
        (5, "redis outage"),
        (5, "mysql outage"),
        (3, "flush redis"),
        (4, "kill -9 redis"),
        (2, "kill -9 redis and wipe it"),
        (4, "stop main consumer"),
        (4, "stop second consumer"),
        (6, "kill -9 service process"),
        (4, "pause service process"),
        (5, "reconcile"),
        (4, "webhook receiver fails"),
        (3, "webhook receiver slow"),
    ];
    // SF_CHAOS_SKIP: faults to leave out (a comma-separated list of parts of their names).
    let skip: Vec<String> = std::env::var("SF_CHAOS_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let faults: Vec<(u32, &str)> = faults
        .iter()
        .copied()
        .filter(|(_, f)| !skip.iter().any(|s| f.contains(s.as_str())))
        .collect();
    assert!(!faults.is_empty(), "SF_CHAOS_SKIP leaves no fault");
    let total: u32 = faults.iter().map(|f| f.0).sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while Instant::now() < sh.deadline {
        let mut pick = rng.gen_range(0..total);
        let fault = faults
            .iter()
            .find(|(w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap()
            .1;
        let secs = |rng: &mut StdRng| Duration::from_millis(rng.gen_range(500..3000));
        match fault {
            "lose redis script reply" => {
                let (name, sha) = &shas[rng.gen_range(0..shas.len())];
                let n = rng.gen_range(1..=3);
                note(
                    sh,
                    injected,
                    format!("lose the reply to the next {n} {name} scripts"),
                );
                rig.redis_proxy.lose_reply_to(sha.as_bytes(), n);
            }
            "lose mysql reply" => {
                let (name, pattern) = mysql_patterns[rng.gen_range(0..mysql_patterns.len())];
                let n = rng.gen_range(1..=3);
                note(
                    sh,
                    injected,
                    format!("lose the reply to the next {n} MySQL {name}"),
                );
                rig.mysql_proxy.lose_reply_to(pattern, n);
            }
            "cut redis" => {
                note(sh, injected, "cut every Redis connection".into());
                rig.redis_proxy.cut_all();
            }
            "cut mysql" => {
                note(sh, injected, "cut every MySQL connection".into());
                rig.mysql_proxy.cut_all();
            }
            "slow redis" | "slow mysql" => {
                let proxy = if fault == "slow redis" {
                    &rig.redis_proxy
                } else {
                    &rig.mysql_proxy
                };
                let latency = Duration::from_millis(rng.gen_range(20..600));
                let d = secs(&mut rng);
                note(
                    sh,
                    injected,
                    format!("{fault}: {latency:?} each way for {d:?}"),
                );
                proxy.set_latency(latency);
                tokio::time::sleep(d).await;
                proxy.set_latency(Duration::ZERO);
            }
            "redis outage" | "mysql outage" => {
                let proxy = if fault == "redis outage" {
                    &rig.redis_proxy
                } else {
                    &rig.mysql_proxy
                };
                let d = secs(&mut rng);
                note(sh, injected, format!("{fault} (cut, refused) for {d:?}"));
                proxy.refuse(true);
                proxy.cut_all();
                tokio::time::sleep(d).await;
                proxy.refuse(false);
            }
            "flush redis" => {
                // At once, as Redis restarted without its data would (the private Redis holds
                // only this test's keys).
                note(
                    sh,
                    injected,
                    "FLUSHALL: Redis loses all its data at once".into(),
                );
                let _: () = redis::cmd("FLUSHALL")
                    .query_async(&mut t.redis().await)
                    .await
                    .unwrap();
                injected.data_losses += 1;
                injected.losses_at.push(sh.ms());
            }
            "kill -9 redis" | "kill -9 redis and wipe it" => {
                let d = Duration::from_millis(rng.gen_range(200..2000));
                note(sh, injected, format!("{fault}, restarted after {d:?}"));
                rig.redis.kill();
                if fault == "kill -9 redis and wipe it" {
                    rig.redis.wipe();
                    injected.data_losses += 1;
                    injected.losses_at.push(sh.ms());
                }
                tokio::time::sleep(d).await;
                tokio::task::block_in_place(|| rig.redis.restart());
            }
            "stop main consumer" | "stop second consumer" => {
                let d = secs(&mut rng);
                note(sh, injected, format!("{fault} (abort) for {d:?}"));
                if fault == "stop main consumer" {
                    t.app().stop_consumer_now();
                    tokio::time::sleep(d).await;
                    t.app().start_consumer();
                } else {
                    rig.second.app_mut().stop_consumer_now();
                    tokio::time::sleep(d).await;
                    rig.second.app_mut().start_consumer();
                }
            }
            "webhook receiver fails" | "webhook receiver slow" => {
                let d = secs(&mut rng);
                let mode = if fault == "webhook receiver fails" {
                    Mode::Status([500, 503, 404][rng.gen_range(0..3)])
                } else {
                    Mode::Sleep(Duration::from_millis(rng.gen_range(200..1500)))
                };
                note(sh, injected, format!("{fault}: {mode:?} for {d:?}"));
                rig.receiver.set(mode);
                tokio::time::sleep(d).await;
                rig.receiver.set(Mode::Ok);
            }
            "pause service process" => {
                // Frozen with its connections open (SIGSTOP), sometimes past the time MariaDB
                // gives an idle transaction: its row locks must not stop the others for long.
                let d = Duration::from_millis(rng.gen_range(500..8000));
                note(
                    sh,
                    injected,
                    format!("pause the service process (SIGSTOP) for {d:?}"),
                );
                if let Some(p) = rig.process.as_ref() {
                    sh.process_up.store(false, Ordering::SeqCst);
                    p.pause();
                    tokio::time::sleep(d).await;
                    p.resume();
                    sh.process_up.store(true, Ordering::SeqCst);
                }
            }
            "kill -9 service process" => {
                let d = Duration::from_millis(rng.gen_range(200..2000));
                note(
                    sh,
                    injected,
                    format!("kill -9 the service process, restarted after {d:?}"),
                );
                sh.process_up.store(false, Ordering::SeqCst);
                if let Some(mut p) = rig.process.take() {
                    p.kill();
                }
                tokio::time::sleep(d).await;
                let (p, live) = start_process(t, &sh.http).await;
                sh.bases.lock().unwrap()[PROCESS] = p.base.clone();
                sh.process_up.store(live, Ordering::SeqCst);
                if !live {
                    note(
                        sh,
                        injected,
                        "the service process did not come back within 15 s".into(),
                    );
                }
                rig.process = Some(p);
            }
            "reconcile" => {
                let r = t.admin().post_empty("/api/admin/reconciliation/runs").await;
                let s = r.status();
                let b: Value = r.json().await.unwrap_or(Value::Null);
                note(
                    sh,
                    injected,
                    format!(
                        "reconciliation run: {s} checked {} repaired {}",
                        b["keysChecked"], b["keysRepaired"]
                    ),
                );
            }
            other => unreachable!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
    }
    note(sh, injected, "faults stop".into());
    rig.redis_proxy.disarm();
    rig.mysql_proxy.disarm();
}

/// [`settle`], explaining a backlog that does not drain: what the event streams hold, their
/// consumer groups and pending entries, and what MySQL holds for the orders their events name.
/// Ends the holds the clients left to expire: their `expiresAt` is moved to now, and the
/// instances' expiry job gives their units back. The checks then read a still world.
async fn expire_holds(t: &TestApp) {
    sqlx::query("UPDATE holds SET expires_at = NOW(3) WHERE status = 'ACTIVE'")
        .execute(&t.db)
        .await
        .unwrap();
    // A lease the killed process held runs out first.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds WHERE status = 'ACTIVE'")
            .fetch_one(&t.db)
            .await
            .unwrap();
        if active == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{active} holds still active 45 s after their expiresAt"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn catch_up(t: &TestApp, world: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = match sf_persistence::consumer::backlog(t.storage()).await {
            Ok((0, _)) => break,
            Ok((n, _)) => format!("{n} events left"),
            Err(e) => format!("the backlog cannot be read: {e}"),
        };
        if Instant::now() > deadline {
            panic!(
                "consumer did not catch up within 60 s: {left}\n{}",
                explain_backlog(t, world).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(t).await;
}

async fn explain_backlog(t: &TestApp, world: &World) -> String {
    let mut out = String::new();
    let mut c = t.redis().await;
    for loc in world.locations() {
        let stream = t.keys().stream(sf_routing::LocationId::new_unchecked(loc));
        let events: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(5)
            .query_async(&mut c)
            .await;
        let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut c)
            .await;
        let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(sf_persistence::consumer::GROUP)
            .arg("-")
            .arg("+")
            .arg(5)
            .query_async(&mut c)
            .await;
        out += &format!(
            "stream {stream}:\n  events {events:?}\n  groups {groups:?}\n  pending {pending:?}\n"
        );
    }
    let recent: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM orders ORDER BY created_at DESC LIMIT 5")
            .fetch_all(&t.db)
            .await
            .unwrap_or_default();
    out += &format!("latest orders in MySQL: {recent:?}\n");
    out
}

/// A reconciliation run that must succeed, once the scheduled runs (which hold its lease for a
/// moment) let it.
async fn reconcile_now(t: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = json_of(t.admin().post_empty("/api/admin/reconciliation/runs").await).await;
        if s == reqwest::StatusCode::OK && b["ok"] == true {
            return b;
        }
        assert!(
            s == reqwest::StatusCode::CONFLICT && Instant::now() < deadline,
            "reconciliation: {s} {b}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes the history and the faults to `target/tmp/chaos/seed-<seed>.jsonl`.
fn write_history(seed: u64, hist: &[Rec], injected: &Injected) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("seed-{seed}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for (at, what) in &injected.log {
        writeln!(f, "{}", json!({"atMs": at, "fault": what})).unwrap();
    }
    for r in hist {
        writeln!(f, "{}", r.json()).unwrap();
    }
    f.flush().unwrap();
    path
}

/// What the history says about one order.
#[derive(Default)]
struct Seen {
    path: Option<Path>,
    /// Answered 201/202.
    answered: bool,
    /// Named by an answer whose outcome was unknown (503/504 with its `orderId`).
    unknown: bool,
    /// Statuses shown to a client (in order answers, look-ups and cancels).
    shown: Vec<String>,
    cancel_sent: bool,
    /// When the first cancel answered 200 was sent (ms since the start).
    cancel_200: Option<u64>,
    /// The first hand-over answered 200: when it was sent, and the step.
    handed_200: Option<(u64, Step)>,
    /// The `readyBy` values shown to a client (a pickup's, in order answers and look-ups).
    ready_by: Vec<String>,
}

/// What the clients were told of holds: the order each conversion answered, and the problem
/// each refused conversion named.
#[derive(Default)]
struct HeldAnswers {
    converted: HashMap<String, String>,
    refused: HashMap<String, String>,
}

/// An order's ledger rows for one (location, product): sale rows, their units, return rows,
/// their units.
type OrderMoves = (i64, i64, i64, i64);

/// An order's `FULFILLED` ledger rows for one (location, product): rows, their available delta,
/// their committed delta.
type HandOverMoves = (i64, i64, i64);

/// The invariants, checked on the history and on what MySQL holds after the run. Answers the
/// violations and a summary.
async fn check(t: &TestApp, hist: &[Rec], injected: &Injected) -> (Vec<String>, String) {
    let mut v: Vec<String> = Vec::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    // I5: the orders answered per Idempotency-Key (a client's keys are its own, and one key is
    // one order on both online paths).
    let mut keyed: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    // I10: the channel each online order was answered to.
    let mut channel_of: HashMap<String, Option<u64>> = HashMap::new();
    // Creations whose outcome is unknown and that name no order: without a key, one each; with a
    // key, one per key that never got a 2xx answer.
    let mut unexplained: BTreeMap<Path, usize> = BTreeMap::new();
    let mut unknown_keys: HashSet<(Path, String)> = HashSet::new();
    let mut created_410 = 0;
    let mut held = HeldAnswers::default();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for r in hist {
        let kind = r.body["type"].as_str().unwrap_or("");
        *tally
            .entry(format!(
                "{:?} {} {}",
                r.op,
                r.status,
                kind.trim_start_matches("/problems/")
            ))
            .or_default() += 1;
        let id = r.body["orderId"].as_str();
        if r.op == Op::Hold(HoldStep::Convert) && r.status == 201 {
            if let Some(id) = id {
                channel_of.insert(id.to_owned(), r.channel);
            }
        }
        match r.op {
            Op::Create(path) => match r.status {
                201 | 202 => {
                    let expected = if path == Path::Redis { 202 } else { 201 };
                    // A keyed retry on the other path replays the order of the path that
                    // placed it.
                    let placed_on = r.body["path"].as_str().and_then(Path::of);
                    let crossed = r.idem.is_some()
                        && path != Path::Pos
                        && matches!(placed_on, Some(Path::Redis | Path::DbLock));
                    if r.status != expected || (placed_on != Some(path) && !crossed) {
                        v.push(format!("{path:?} order answered {}: {}", r.status, r.body));
                    }
                    let path = placed_on.unwrap_or(path);
                    let id = id.unwrap_or_default().to_owned();
                    if path != Path::Pos {
                        channel_of.insert(id.clone(), r.channel);
                    }
                    let s = seen.entry(id.clone()).or_default();
                    s.path = Some(path);
                    s.answered = true;
                    if let Some(st) = r.body["status"].as_str() {
                        s.shown.push(st.to_owned());
                    }
                    s.ready_by
                        .extend(r.body["readyBy"].as_str().map(str::to_owned));
                    if let Some(k) = &r.idem {
                        keyed.entry(k.clone()).or_default().insert(id);
                    }
                }
                503 | 504 if id.is_some() => {
                    let s = seen.entry(id.unwrap().to_owned()).or_default();
                    s.path = Some(path);
                    s.unknown = true;
                }
                0 | 500 | 502..=504 => match &r.idem {
                    Some(k) => {
                        unknown_keys.insert((path, k.clone()));
                    }
                    None => *unexplained.entry(path).or_default() += 1,
                },
                409 => {}
                410 => created_410 += 1,
                _ => v.push(format!(
                    "unexpected answer to an order: {} {}",
                    r.status, r.body
                )),
            },
            Op::Cancel(path) => {
                let id = r.order.clone().unwrap();
                let s = seen.entry(id).or_default();
                s.path.get_or_insert(path);
                s.cancel_sent = true;
                match r.status {
                    200 => {
                        s.cancel_200.get_or_insert(r.at_ms);
                        if r.body["status"] != "CANCELLED" {
                            v.push(format!("a cancel answered 200 with {}", r.body));
                        }
                        s.shown.push("CANCELLED".into());
                    }
                    0 | 404 | 409 | 410 | 500 | 502..=504 => {}
                    _ => v.push(format!(
                        "unexpected answer to {}: {} {}",
                        r.url, r.status, r.body
                    )),
                }
            }
            // Checked as it ran: never 2xx.
            Op::Foreign => {}
            Op::Status => match r.status {
                200 => {
                    let s = seen.entry(r.order.clone().unwrap()).or_default();
                    if let Some(st) = r.body["status"].as_str() {
                        s.shown.push(st.to_owned());
                    }
                    s.ready_by
                        .extend(r.body["readyBy"].as_str().map(str::to_owned));
                }
                0 | 404 | 410 | 500 | 502..=504 => {}
                _ => v.push(format!(
                    "unexpected answer to {}: {} {}",
                    r.url, r.status, r.body
                )),
            },
            Op::Fulfil(step) => match r.status {
                200 => {
                    let s = seen.entry(r.order.clone().unwrap()).or_default();
                    if let Some(st) = r.body["status"].as_str() {
                        s.shown.push(st.to_owned());
                    }
                    s.ready_by
                        .extend(r.body["readyBy"].as_str().map(str::to_owned));
                    let f = &r.body["fulfillment"];
                    if r.body["status"] != "CONFIRMED" || f["status"] != step.target() {
                        v.push(format!("{step:?} answered 200 with {}", r.body));
                    }
                    // A store's answers never show the pickup code.
                    if step != Step::Ship && !f["pickupCode"].is_null() {
                        v.push(format!("{} answered the pickup code: {}", r.url, r.body));
                    }
                    if step.hands_over() {
                        s.handed_200.get_or_insert((r.at_ms, step));
                    }
                }
                // A pickup placed anew after a data loss (a keyed retry of an order Redis lost)
                // has a new code.
                403 if step == Step::Collect && injected.data_losses > 0 => {}
                0 | 404 | 409 | 410 | 500 | 502..=504 => {}
                _ => v.push(format!(
                    "unexpected answer to {}: {} {}",
                    r.url, r.status, r.body
                )),
            },
            Op::SetStock | Op::Adjust => match r.status {
                0 | 200 | 409 | 422 | 500 | 502..=504 => {}
                _ => v.push(format!(
                    "unexpected answer to {}: {} {}",
                    r.url, r.status, r.body
                )),
            },
            Op::Hours => match r.status {
                0 | 200 | 500 | 502..=504 => {}
                _ => v.push(format!(
                    "unexpected answer to {}: {} {}",
                    r.url, r.status, r.body
                )),
            },
            Op::Hold(step) => {
                let hold = r.order.clone().unwrap_or_default();
                match (step, r.status) {
                    (HoldStep::Place, 201) if r.body["holdId"].is_string() => {}
                    (HoldStep::Convert, 201) => {
                        let order = id.unwrap_or_default().to_owned();
                        if r.body["status"] != "CONFIRMED" || r.body["path"] != "DB_LOCK" {
                            v.push(format!("hold {hold} converted into {}", r.body));
                        }
                        let s = seen.entry(order.clone()).or_default();
                        s.path = Some(Path::DbLock);
                        s.answered = true;
                        s.shown.push("CONFIRMED".into());
                        s.ready_by
                            .extend(r.body["readyBy"].as_str().map(str::to_owned));
                        let first = held.converted.entry(hold.clone()).or_insert(order.clone());
                        if *first != order {
                            v.push(format!(
                                "hold {hold} converted into two orders: {first} and {order}"
                            ));
                        }
                    }
                    (HoldStep::Convert, 409) => {
                        held.refused.insert(hold, kind.to_owned());
                    }
                    (HoldStep::Release, 200) => {
                        if !matches!(r.body["status"].as_str(), Some("RELEASED" | "EXPIRED")) {
                            v.push(format!("hold {hold} released: {}", r.body));
                        }
                    }
                    (_, 0 | 409 | 500 | 502..=504) => {}
                    _ => v.push(format!(
                        "unexpected answer to {}: {} {}",
                        r.url, r.status, r.body
                    )),
                }
            }
        }
    }
    for (path, k) in &unknown_keys {
        if !keyed.contains_key(k) {
            *unexplained.entry(*path).or_default() += 1;
        }
    }
    if created_410 > 0 && injected.data_losses == 0 {
        v.push(format!(
            "{created_410} orders answered 410 though Redis lost no data"
        ));
    }

    // What MySQL holds.
    let mut orders: HashMap<String, (String, String, u64, Option<String>)> = HashMap::new();
    for r in sqlx::query("SELECT id, status, path, location_id, reject_reason FROM orders")
        .fetch_all(&t.db)
        .await
        .unwrap()
    {
        orders.insert(
            r.get("id"),
            (
                r.get("status"),
                r.get("path"),
                r.get("location_id"),
                r.get("reject_reason"),
            ),
        );
    }
    // Holds: each ends in one state, and what its conversions answered agrees with it. The order
    // a converted hold names is explained by the conversions sent for it, answered or not.
    // (location, product) → units of holds still active; (hold, location, product) → its lines.
    let mut active: HashMap<(u64, u64), i64> = HashMap::new();
    let mut hold_lines: HashMap<(String, u64, u64), (String, i64)> = HashMap::new();
    for r in sqlx::query(
        "SELECT h.id, CAST(h.status AS CHAR) AS status, h.order_id, h.location_id, \
         l.product_id, l.quantity FROM holds h JOIN hold_lines l ON l.hold_id = h.id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        let (hold, status, order): (String, String, Option<String>) =
            (r.get("id"), r.get("status"), r.get("order_id"));
        let (loc, p, q): (u64, u64, i32) =
            (r.get("location_id"), r.get("product_id"), r.get("quantity"));
        if status == "ACTIVE" {
            *active.entry((loc, p)).or_default() += i64::from(q);
        }
        hold_lines.insert((hold.clone(), loc, p), (status.clone(), i64::from(q)));
        let answered = held.converted.get(&hold);
        let refused = held.refused.get(&hold).map(String::as_str);
        match (status.as_str(), &order) {
            ("CONVERTED", Some(order)) => {
                if answered.is_some_and(|a| a != order) {
                    v.push(format!(
                        "hold {hold} answered order {answered:?}, MySQL names {order}"
                    ));
                }
                if matches!(
                    refused,
                    Some("/problems/hold-expired" | "/problems/hold-released")
                ) {
                    v.push(format!(
                        "hold {hold} is CONVERTED but a conversion was refused: {refused:?}"
                    ));
                }
                if !orders.contains_key(order) {
                    v.push(format!(
                        "hold {hold} names order {order}, which MySQL lacks"
                    ));
                }
                let s = seen.entry(order.clone()).or_default();
                s.path.get_or_insert(Path::DbLock);
                s.unknown |= !s.answered;
            }
            ("ACTIVE" | "RELEASED" | "EXPIRED", None) => {
                if answered.is_some() {
                    v.push(format!(
                        "hold {hold} is {status} but was converted into {answered:?}"
                    ));
                }
                let agrees = match refused {
                    Some("/problems/hold-expired") => status == "EXPIRED",
                    Some("/problems/hold-released") => status == "RELEASED",
                    _ => true,
                };
                if !agrees {
                    v.push(format!(
                        "hold {hold} is {status}; a conversion was told {refused:?}"
                    ));
                }
            }
            _ => v.push(format!("hold {hold} is {status} with order {order:?}")),
        }
    }
    // Each order's way out: (fulfillment, delivery type, cancel reason).
    let mut ways: HashMap<String, (String, String, Option<String>)> = HashMap::new();
    // I10: every online order keeps the channel whose key placed it.
    let channels: HashMap<String, Option<u64>> =
        sqlx::query_as("SELECT id, channel_id FROM orders WHERE path <> 'POS'")
            .fetch_all(&t.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for (id, placed_by) in &channel_of {
        if let Some(kept) = channels.get(id) {
            if kept != placed_by {
                v.push(format!(
                    "I10: order {id} was placed by channel {placed_by:?}, MySQL keeps {kept:?}"
                ));
            }
        }
    }
    // I9: a pickup's readyBy is kept as it was promised.
    let mut ready_by: HashMap<String, Option<String>> = HashMap::new();
    for r in sqlx::query(
        "SELECT id, CAST(fulfillment AS CHAR) AS fulfillment, \
         CAST(delivery_type AS CHAR) AS delivery_type, cancel_reason, ready_by FROM orders",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        ready_by.insert(r.get("id"), r.get("ready_by"));
        ways.insert(
            r.get("id"),
            (
                r.get("fulfillment"),
                r.get("delivery_type"),
                r.get("cancel_reason"),
            ),
        );
    }
    for (id, (_, delivery_type, _)) in &ways {
        let kept = &ready_by[id];
        if (delivery_type == "PICKUP") != kept.is_some() {
            v.push(format!(
                "I9: {delivery_type} order {id} has readyBy {kept:?}"
            ));
        }
        if let Some(s) = seen.get(id) {
            if let Some(other) = s.ready_by.iter().find(|r| Some(*r) != kept.as_ref()) {
                v.push(format!(
                    "I9: order {id} was shown readyBy {other}, MySQL keeps {kept:?}"
                ));
            }
        }
    }
    let mut lines: HashMap<String, Vec<(u64, i64)>> = HashMap::new();
    for r in sqlx::query("SELECT order_id, product_id, quantity FROM order_lines")
        .fetch_all(&t.db)
        .await
        .unwrap()
    {
        let q: i32 = r.get("quantity");
        lines
            .entry(r.get("order_id"))
            .or_default()
            .push((r.get("product_id"), i64::from(q)));
    }
    // Order movements by (ref, location, product).
    let mut moves: HashMap<(String, u64, u64), OrderMoves> = HashMap::new();
    // Hand-over movements by (ref, location, product).
    let mut handovers: HashMap<(String, u64, u64), HandOverMoves> = HashMap::new();
    // Holds' own movements by (ref, location, product): rows, their available delta.
    let mut hold_moves: HashMap<(String, u64, u64), (i64, i64)> = HashMap::new();
    // Operators' movements per (location, product).
    let mut operators: HashMap<(u64, u64), i64> = HashMap::new();
    // Rows an operator took units from: a count (or damage) may find fewer units than orders
    // hold, which leaves available below zero — a real shortage, not an oversell.
    let mut shelf_found_short: std::collections::HashSet<(u64, u64)> = Default::default();
    for r in sqlx::query(
        "SELECT ref_id, location_id, product_id, reason, CAST(COUNT(*) AS SIGNED) AS n, \
         CAST(SUM(available_delta) AS SIGNED) AS d, \
         CAST(SUM(committed_delta) AS SIGNED) AS c FROM stock_movements \
         GROUP BY ref_id, location_id, product_id, reason",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        let (rf, loc, p): (String, u64, u64) =
            (r.get("ref_id"), r.get("location_id"), r.get("product_id"));
        let (reason, n, d, c): (String, i64, i64, i64) =
            (r.get("reason"), r.get("n"), r.get("d"), r.get("c"));
        match reason.as_str() {
            "ORDER" | "POS_SALE" => {
                let m = moves.entry((rf, loc, p)).or_default();
                m.0 += n;
                m.1 += d;
            }
            "FULFILLED" => {
                let m = handovers.entry((rf, loc, p)).or_default();
                m.0 += n;
                m.1 += d;
                m.2 += c;
            }
            // A pickup nobody came for is cancelled by the service: a return of its units.
            "CANCEL" | "NOT_COLLECTED" | "POS_RETURN" => {
                let m = moves.entry((rf, loc, p)).or_default();
                m.2 += n;
                m.3 += d;
            }
            // A converted hold's units go from reserved to committed: its order's sale row (the
            // units left `available` with the hold's own row).
            "HOLD_CONVERTED" => {
                let m = moves.entry((rf, loc, p)).or_default();
                m.0 += n;
                m.1 -= c;
            }
            "HOLD" | "HOLD_RELEASED" | "HOLD_EXPIRED" => {
                let m = hold_moves.entry((rf, loc, p)).or_default();
                m.0 += n;
                m.1 += d;
            }
            "RESTOCK" | "ADJUST" | "COUNT" | "DAMAGED" => {
                *operators.entry((loc, p)).or_default() += d;
                if d < 0 {
                    shelf_found_short.insert((loc, p));
                }
            }
            other => v.push(format!(
                "ledger rows of reason {other} ({n} rows, {d} units) at ({loc},{p}), ref {rf}"
            )),
        }
    }

    // I5: one order per key. An order Redis accepted and then lost with its data (with the key's
    // claim, before it reached MySQL) was never created: the key's retry may place the order anew.
    // A retry that Redis answered with a second order while the first was still on its way to
    // MySQL gives way there: it is persisted REJECTED, its reason naming the key. So at most one
    // of a key's orders stands in MySQL, and any other is such a rejection or went with a data
    // loss after the key was first sent.
    for (k, ids) in &keyed {
        let first = hist
            .iter()
            .find(|r| r.idem.as_deref() == Some(k.as_str()))
            .map_or(0, |r| r.at_ms);
        let gave_way = ids
            .iter()
            .filter(|id| {
                orders.get(*id).is_some_and(|o| {
                    o.0 == "REJECTED"
                        && o.3
                            .as_deref()
                            .is_some_and(|r| r.contains("Idempotency-Key"))
                })
            })
            .count();
        let standing = ids.iter().filter(|id| orders.contains_key(*id)).count() - gave_way;
        let missing = ids.len() - standing - gave_way;
        let lost_with_data = missing == 0 || injected.losses_at.iter().any(|l| *l + 50 >= first);
        if ids.len() > 1 && (standing > 1 || !lost_with_data) {
            let ends: Vec<String> = ids
                .iter()
                .map(|id| {
                    let end = orders.get(id).map_or("not in MySQL", |o| o.0.as_str());
                    format!("{id} ({end})")
                })
                .collect();
            v.push(format!(
                "I5: Idempotency-Key {k} answered {} orders: {} (first sent at {first} ms, {})",
                ids.len(),
                ends.join(", "),
                injected.loss_after(first)
            ));
        }
    }
    // I2: every order answered 2xx (or named by an unknown outcome) is in MySQL, terminal; lost
    // only with Redis's data.
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost = 0;
    for (id, s) in &seen {
        if !(s.answered || s.unknown) {
            continue;
        }
        let end = match orders.get(id) {
            Some((status, path, _, reason)) => {
                if Path::of(path) != s.path {
                    v.push(format!(
                        "order {id} was placed on {:?}, MySQL says {path}",
                        s.path
                    ));
                }
                if status == "REJECTED"
                    && (path != "REDIS" || reason.as_deref().unwrap_or("").is_empty())
                {
                    v.push(format!("{path} order {id} REJECTED with reason {reason:?}"));
                }
                status.clone()
            }
            None => {
                // Within 30 s of a data loss the service cannot tell lost from late (503).
                let settles = Instant::now() + Duration::from_secs(40);
                let (st, b) = loop {
                    let (st, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
                    if st != reqwest::StatusCode::SERVICE_UNAVAILABLE || Instant::now() > settles {
                        break (st, b);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                };
                let kind = b["type"].as_str().unwrap_or("").to_owned();
                match (st.as_u16(), kind.as_str()) {
                    (410, "/problems/order-lost") if injected.data_losses > 0 => {
                        lost += 1;
                        "LOST (410)".into()
                    }
                    (404, "/problems/unknown-order") if !s.answered => "NOT PLACED (404)".into(),
                    _ => {
                        v.push(format!(
                            "I2: order {id} ({:?}, answered 2xx: {}, shown {:?}) is not in MySQL; \
                             GET answers {st} {b}",
                            s.path, s.answered, s.shown
                        ));
                        format!("MISSING {st}")
                    }
                }
            }
        };
        *ends
            .entry(format!(
                "{} {}{}",
                s.path.map_or("?", |p| p.as_str()),
                end,
                if s.answered { "" } else { " (outcome unknown)" }
            ))
            .or_default() += 1;
    }
    // I3/I8: answers are final.
    for (id, s) in &seen {
        let Some((end, ..)) = orders.get(id) else {
            if let Some(at) = s.cancel_200 {
                v.push(format!(
                    "I3/I8: order {id} was cancelled (200 at {at} ms) but is not in MySQL ({})",
                    injected.loss_after(at)
                ));
            }
            if let Some((at, step)) = s.handed_200 {
                v.push(format!(
                    "I8: order {id} was handed over ({step:?} answered 200 at {at} ms) but is not in MySQL"
                ));
            }
            continue;
        };
        let (fulfillment, _, cancel_reason) = &ways[id];
        // A hand-over answered 200 is final: MySQL shows it, and no cancel came after it.
        if let Some((at, step)) = s.handed_200 {
            if end != "CONFIRMED" || fulfillment != step.target() {
                v.push(format!(
                    "I8: order {id} was handed over ({step:?} answered 200 at {at} ms) but ends \
                     {end}, {fulfillment}"
                ));
            }
        }
        let shown = |x: &str| s.shown.iter().any(|y| y == x);
        let ok = match end.as_str() {
            // The service cancels a pickup nobody came for.
            "CANCELLED" => s.cancel_sent || cancel_reason.as_deref() == Some("NOT_COLLECTED"),
            "CONFIRMED" => !shown("CANCELLED") && !shown("REJECTED"),
            "REJECTED" => !shown("CANCELLED") && !shown("CONFIRMED"),
            _ => false,
        };
        if !ok || (s.cancel_200.is_some() && end != "CANCELLED") {
            v.push(format!(
                "I8: order {id} ends {end}; clients were shown {:?} (cancel sent: {}, a cancel answered 200: {})",
                s.shown,
                s.cancel_sent,
                s.cancel_200.map_or("no".into(), |at| format!(
                    "at {at} ms, {}",
                    injected.loss_after(at)
                ))
            ));
        }
    }
    // No order in MySQL that no answer explains (I2 "exactly once", I5).
    let mut phantoms: BTreeMap<Path, Vec<&String>> = BTreeMap::new();
    for (id, (_, path, ..)) in &orders {
        if !seen.get(id).is_some_and(|s| s.answered || s.unknown) {
            match Path::of(path) {
                Some(p) => phantoms.entry(p).or_default().push(id),
                None => v.push(format!("order {id} has path {path}")),
            }
        }
    }
    for (path, ids) in &phantoms {
        let may = unexplained.get(path).copied().unwrap_or(0);
        if ids.len() > may {
            v.push(format!(
                "{} {path:?} orders in MySQL no answer named, but only {may} creations had an unknown outcome: {:?}",
                ids.len(),
                ids.iter().take(10).collect::<Vec<_>>()
            ));
        }
    }
    // I3: each order's ledger: a confirmed order took its units once, a cancelled one took them
    // and gave them back once (or never took them), a rejected one never took them; and an
    // online order handed over (collected, dispatched, shipped) took each line's units out
    // of committed once: one FULFILLED row per line, committed −q, available 0; no other order
    // has such rows, and no cancelled (or rejected) order is handed over.
    let mut accounted: HashSet<(String, u64, u64)> = HashSet::new();
    let mut ways_out: BTreeMap<String, usize> = BTreeMap::new();
    for (id, (status, path, loc, _)) in &orders {
        let (fulfillment, delivery_type, _) = &ways[id];
        let online = path != "POS";
        let handed = online && handed_over(fulfillment);
        if online {
            *ways_out
                .entry(format!("{status} {delivery_type} {fulfillment}"))
                .or_default() += 1;
        }
        if handed
            && (status != "CONFIRMED" || hand_over_of(delivery_type) != Some(fulfillment.as_str()))
        {
            v.push(format!(
                "I3: {status} {delivery_type} order {id} is handed over: {fulfillment}"
            ));
        }
        for (p, q) in lines.get(id).map(Vec::as_slice).unwrap_or(&[]) {
            let key = (id.clone(), *loc, *p);
            let h = handovers.get(&key).copied().unwrap_or_default();
            if h != if handed { (1, 0, -q) } else { (0, 0, 0) } {
                v.push(format!(
                    "I3: {status} {path} order {id} ({fulfillment}), {q} of product {p} at {loc}: \
                     {} FULFILLED rows (available {:+}, committed {:+})",
                    h.0, h.1, h.2
                ));
            }
            let m = moves.get(&key).copied().unwrap_or_default();
            accounted.insert(key);
            let ok = match status.as_str() {
                "CONFIRMED" => m == (1, -q, 0, 0),
                "CANCELLED" => m == (0, 0, 0, 0) || m == (1, -q, 1, *q),
                _ => m == (0, 0, 0, 0),
            };
            if !ok {
                v.push(format!(
                    "I3: {status} order {id}, {q} of product {p} at {loc}: ledger has {} sale rows \
                     ({} units), {} return rows ({} units)",
                    m.0, m.1, m.2, m.3
                ));
            }
        }
        if !lines.contains_key(id) {
            v.push(format!("order {id} has no lines"));
        }
    }
    for (key, m) in &moves {
        if !accounted.contains(key) {
            v.push(format!(
                "ledger rows for order {} at ({},{}) that no order line explains: {m:?}",
                key.0, key.1, key.2
            ));
        }
    }
    // A hold's own rows: one HOLD row per line, and one row giving the units back once it was
    // released or expired (a converted hold's units are its order's).
    for (key, (status, q)) in &hold_lines {
        let m = hold_moves.get(key).copied().unwrap_or_default();
        let want = match status.as_str() {
            "RELEASED" | "EXPIRED" => (2, 0),
            _ => (1, -q),
        };
        if m != want {
            v.push(format!(
                "I3: {status} hold {}, {q} of product {} at {}: {} rows, available {:+}",
                key.0, key.2, key.1, m.0, m.1
            ));
        }
    }
    for (key, m) in &hold_moves {
        if !hold_lines.contains_key(key) {
            v.push(format!(
                "hold rows for {} at ({},{}) that no hold line explains: {m:?}",
                key.0, key.1, key.2
            ));
        }
    }
    for (key, h) in &handovers {
        if !accounted.contains(key) {
            v.push(format!(
                "FULFILLED rows for order {} at ({},{}) that no order line explains: {h:?}",
                key.0, key.1, key.2
            ));
        }
    }
    // I1: per (location, product): on-hand never below zero; available is what was there
    // (initial stock plus operators' changes) less the units of confirmed orders, and below zero
    // only where an operator took units away (units sold never above what was there otherwise).
    let mut sold: HashMap<(u64, u64), i64> = HashMap::new();
    for (id, (status, _, loc, _)) in &orders {
        if status == "CONFIRMED" {
            for (p, q) in lines.get(id).map(Vec::as_slice).unwrap_or(&[]) {
                *sold.entry((*loc, *p)).or_default() += q;
            }
        }
    }
    let mut sold_total = 0;
    for r in sqlx::query(
        "SELECT location_id, product_id, available, committed + reserved AS held, initial_quantity \
         FROM stock",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    {
        let (loc, p): (u64, u64) = (r.get("location_id"), r.get("product_id"));
        let (available, held, initial): (i64, i64, i64) =
            (r.get("available"), r.get("held"), r.get("initial_quantity"));
        let s = sold.get(&(loc, p)).copied().unwrap_or(0);
        let ops = operators.get(&(loc, p)).copied().unwrap_or(0);
        // Units still held are neither available nor sold.
        let s = s + active.get(&(loc, p)).copied().unwrap_or(0);
        sold_total += s;
        let short_found = shelf_found_short.contains(&(loc, p));
        if available + held < 0
            || available != initial + ops - s
            || (available < 0 && !short_found)
        {
            v.push(format!(
                "I1: ({loc},{p}): available {available}, held {held}, sold {s}, initial {initial}, operators {ops:+}"
            ));
        }
    }

    // I11: the outbox agrees with MySQL (common::outbox).
    v.extend(
        outbox_violations(t)
            .await
            .into_iter()
            .map(|e| format!("I11: {e}")),
    );

    let mut summary = format!(
        "{} requests; {} orders in MySQL, {sold_total} units sold; {lost} reported lost; \
         Redis lost its data {} times; {} faults\n",
        hist.len(),
        orders.len(),
        injected.data_losses,
        injected.log.len()
    );
    summary += &format!("order ends: {ends:?}\n");
    summary += &format!("online orders' ways out: {ways_out:?}\n");
    summary += &format!(
        "orders no answer named: {:?} (unknown outcomes without an id: {unexplained:?})\n",
        phantoms
            .iter()
            .map(|(p, ids)| (p, ids.len()))
            .collect::<BTreeMap<_, _>>()
    );
    summary += "answers:\n";
    for (k, n) in &tally {
        summary += &format!("  {n:>6}  {k}\n");
    }
    (v, summary)
}

/// Every invariant under a random fault schedule; see the module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_under_mixed_load_keep_every_invariant() {
    let seed: u64 = std::env::var("SF_CHAOS_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("SF_CHAOS_SEED is a number"))
        .unwrap_or_else(rand::random);
    let secs: u64 = std::env::var("SF_CHAOS_SECS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .expect("SF_CHAOS_SECS is a number of seconds")
        })
        .unwrap_or(DEFAULT_SECS);
    eprintln!("chaos: SF_CHAOS_SEED={seed} SF_CHAOS_SECS={secs}");
    let began = Instant::now();

    let redis = PrivateRedis::start();
    let redis_proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port)).await;
    let mysql_proxy = Proxy::start(&host_port(&server_url())).await;
    let redis_url = via(&redis.url(), redis_proxy.port);
    let mut t = TestApp::spawn_with(|c| {
        c.storage.redis_url = redis_url.into();
        c.storage.database_url = via(c.storage.database_url.expose(), mysql_proxy.port).into();
        c.reconcile_schedule = "*/10 * * * * *".into();
        c.reclaim_schedule = "*/5 * * * * *".into();
        c.health_check_ms = 250;
        quick(c);
    })
    .await;

    // Two warehouses and two stores (both within the same-day radius of City Hall); every
    // product at every location; two hot products with little stock.
    let warehouses = vec![
        t.add_location("WAREHOUSE", "W1", WAREHOUSE_AT.0, WAREHOUSE_AT.1)
            .await,
        t.add_location("WAREHOUSE", "W2", 37.55, 126.85).await,
    ];
    let store_ids = vec![
        t.add_location("STORE", "S1", SEOUL.0, SEOUL.1).await,
        t.add_location("STORE", "S2", 37.5700, 126.9900).await,
    ];
    // One store warns of low stock (`stock.low`) at 3 sellable units.
    sqlx::query("UPDATE locations SET low_stock_threshold = 3 WHERE id = ?")
        .bind(store_ids[0])
        .execute(&t.db)
        .await
        .unwrap();
    let mut products = Vec::new();
    for _ in 0..6 {
        products.push(t.add_product(1_000).await);
    }
    let hot = products[..2].to_vec();
    for (i, p) in products.iter().enumerate() {
        for loc in &warehouses {
            t.stock_row(*loc, *p, if i < 2 { 15 } else { 150 }).await;
        }
        for loc in &store_ids {
            t.stock_row(*loc, *p, if i < 2 { 6 } else { 40 }).await;
        }
    }
    let mut stores = Vec::new();
    for s in &store_ids {
        stores.push((*s, t.issue_key(*s).await));
    }
    let app = shop_channel_named(t.storage(), "chaos-app").await;
    let world = World {
        warehouses,
        stores,
        products,
        hot,
        channels: vec![
            (t.shop.channel_id, t.shop.key.clone()),
            (app.channel_id, app.key),
        ],
    };

    // Every event goes to a webhook endpoint in this process (its faults: answering errors, slow).
    let receiver = Receiver::start().await;
    let (webhook, secret) = register(&t, &receiver.url, &ALL_TYPES).await;
    let from_seq = endpoint_start(&t, webhook).await;

    let second = t.spawn_instance(|_| {}).await;
    let http = t.client.clone();
    let (process, live) = start_process(&t, &http).await;
    assert!(live, "the service process started");
    let started = Instant::now();
    let sh = Arc::new(Shared {
        bases: Mutex::new(vec![t.base.clone(), second.base(), process.base.clone()]),
        http,
        process_up: AtomicBool::new(true),
        world,
        started,
        deadline: started + Duration::from_secs(secs),
        history: Mutex::new(Vec::new()),
        online: Mutex::new(Vec::new()),
        pos: Mutex::new(Vec::new()),
        outbound: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
    });
    let mut rig = Rig {
        redis,
        redis_proxy,
        mysql_proxy,
        second,
        process: Some(process),
        receiver,
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(run_client(sh.clone(), c, seed)))
        .collect();
    let mut injected = Injected::default();
    fault_schedule(seed, &mut t, &mut rig, &sh, &mut injected).await;
    for c in clients {
        c.await.expect("a client panicked");
    }
    eprintln!("chaos: load ran {:?}", started.elapsed());

    // Faults stopped; the process is gone for good; the instances catch up and reconcile.
    sh.process_up.store(false, Ordering::SeqCst);
    if let Some(mut p) = rig.process.take() {
        p.kill();
    }
    let hist = std::mem::take(&mut *sh.history.lock().unwrap());
    let file = write_history(seed, &hist, &injected);
    eprintln!("chaos: history in {}", file.display());
    expire_holds(&t).await;
    catch_up(&t, &sh.world).await;
    let run = reconcile_now(&t).await;
    eprintln!("chaos: reconciliation after the load: {run}");
    catch_up(&t, &sh.world).await;

    let (mut violations, summary) = check(&t, &hist, &injected).await;
    // I12: every event reached the webhook endpoint, signed, in order per subject.
    violations.extend(
        delivery_violations(&t, &rig.receiver, webhook, from_seq, &secret)
            .await
            .into_iter()
            .map(|e| format!("I12: {e}")),
    );
    eprintln!("chaos: seed {seed}: {summary}");
    violations.splice(0..0, sh.violations.lock().unwrap().drain(..));
    assert!(
        violations.is_empty(),
        "seed {seed}: {} violations:\n{}",
        violations.len(),
        violations
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // I4: Redis equals MySQL for every stock key, on-hand equals initial plus the ledger.
    t.assert_converged(InRedis::All).await;
    eprintln!("chaos: seed {seed} passed in {:?}", began.elapsed());
}
