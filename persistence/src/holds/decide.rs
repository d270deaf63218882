//! What a hold is at an instant, and what may be done with it: pure functions over the row's
//! values and MySQL's `now`, so that a read, an extension, a release, a conversion and the
//! expiry job all decide by the same rules.

use crate::error::Refusal;

/// The shortest and longest a hold may be asked to last, in seconds.
pub const MIN_TTL_SECS: u32 = 10;
pub const MAX_TTL_SECS: u32 = 3600;
/// The TTL of a hold that names none.
pub const DEFAULT_TTL_SECS: u32 = 600;
/// The longest a hold lives in all, however often it is extended, in milliseconds (2 h).
pub const MAX_LIFETIME_MS: i64 = 2 * 3600 * 1000;

/// How long a hold should last from now: validated once, 10 to 3600 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u32);

impl Ttl {
    pub fn new(secs: i64) -> Result<Self, Refusal> {
        u32::try_from(secs)
            .ok()
            .filter(|s| (MIN_TTL_SECS..=MAX_TTL_SECS).contains(s))
            .map(Self)
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "ttlSeconds must be {MIN_TTL_SECS} to {MAX_TTL_SECS}, not {secs}"
                ))
            })
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    pub fn millis(self) -> i64 {
        i64::from(self.0) * 1000
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self(DEFAULT_TTL_SECS)
    }
}

/// A hold's state, as the `status` column spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    /// Its units are `reserved`: no one else can buy them.
    Active,
    /// It became an order (`orderId`); its units are that order's.
    Converted,
    /// Its customer let it go; its units are available again.
    Released,
    /// It passed its `expiresAt`; its units are available again (within 5 s).
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Converted => "CONVERTED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "CONVERTED" => Some(Self::Converted),
            "RELEASED" => Some(Self::Released),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// The one definition of a hold's state at `now_ms`: a hold written `ACTIVE` whose `expiresAt`
/// has come is `EXPIRED`, whether or not the expiry job has written it yet.
pub fn effective(stored: HoldStatus, expires_ms: i64, now_ms: i64) -> HoldStatus {
    match stored {
        HoldStatus::Active if now_ms >= expires_ms => HoldStatus::Expired,
        s => s,
    }
}

/// How a hold's units may leave `reserved` for `available`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its customer releases it.
    Release,
    /// The expiry job finds it past its time.
    Expire,
}

/// Under the hold's row lock: the state to write when `want` ends it, or `None` when its units
/// stay as they are (it ended before, or, for the job, it has not expired). A release of a hold
/// that expired meanwhile ends it as `EXPIRED`: both sides tell the same story.
pub fn ending(
    stored: HoldStatus,
    expires_ms: i64,
    now_ms: i64,
    want: Ending,
) -> Option<HoldStatus> {
    if stored != HoldStatus::Active {
        return None;
    }
    match (effective(stored, expires_ms, now_ms), want) {
        (HoldStatus::Expired, _) => Some(HoldStatus::Expired),
        (_, Ending::Release) => Some(HoldStatus::Released),
        (_, Ending::Expire) => None,
    }
}

/// The refusal for acting on a hold that is no longer active (`None` while it is), as a
/// conversion or an extension sees it.
pub fn not_active(hold_id: &str, now: HoldStatus, order_id: Option<&str>) -> Option<Refusal> {
    match now {
        HoldStatus::Active => None,
        HoldStatus::Expired => Some(Refusal::HoldExpired(format!(
            "hold {hold_id} has expired; its units are available again — place a new hold"
        ))),
        HoldStatus::Released => Some(Refusal::HoldReleased(format!(
            "hold {hold_id} was released; its units are available again — place a new hold"
        ))),
        HoldStatus::Converted => Some(Refusal::Conflict(format!(
            "hold {hold_id} was already turned into order {}",
            order_id.unwrap_or("?")
        ))),
    }
}

/// The new `expiresAt` (ms) of an extension to `ttl` from `now_ms`, or why it is refused: only
/// an active hold is extended, and never past [`MAX_LIFETIME_MS`] after its creation.
pub fn extend(
    hold_id: &str,
    now: HoldStatus,
    order_id: Option<&str>,
    created_ms: i64,
    now_ms: i64,
    ttl: Ttl,
) -> Result<i64, Refusal> {
    if let Some(refused) = not_active(hold_id, now, order_id) {
        return Err(refused);
    }
    let until = now_ms + ttl.millis();
    let limit = created_ms + MAX_LIFETIME_MS;
    if until > limit {
        let left = (limit - now_ms).max(0) / 1000;
        return Err(Refusal::Invalid(format!(
            "a hold lives at most 2 h in all: hold {hold_id} can be extended by at most {left} s \
             now, not {} s",
            ttl.secs()
        )));
    }
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_10_to_3600_seconds() {
        assert!(Ttl::new(9).is_err());
        assert!(Ttl::new(3601).is_err());
        assert!(Ttl::new(-1).is_err());
        assert_eq!(Ttl::new(10).unwrap().secs(), 10);
        assert_eq!(Ttl::new(3600).unwrap().millis(), 3_600_000);
        assert_eq!(Ttl::default().secs(), 600);
    }

    #[test]
    fn an_active_hold_expires_at_its_instant() {
        assert_eq!(effective(HoldStatus::Active, 1000, 999), HoldStatus::Active);
        assert_eq!(
            effective(HoldStatus::Active, 1000, 1000),
            HoldStatus::Expired
        );
        assert_eq!(
            effective(HoldStatus::Released, 1000, 5000),
            HoldStatus::Released
        );
        assert_eq!(
            effective(HoldStatus::Converted, 1000, 5000),
            HoldStatus::Converted
        );
    }

    #[test]
    fn a_hold_ends_once() {
        use HoldStatus::*;
        assert_eq!(ending(Active, 1000, 10, Ending::Release), Some(Released));
        assert_eq!(ending(Active, 1000, 10, Ending::Expire), None);
        assert_eq!(ending(Active, 1000, 1000, Ending::Expire), Some(Expired));
        assert_eq!(ending(Active, 1000, 2000, Ending::Release), Some(Expired));
        for s in [Converted, Released, Expired] {
            assert_eq!(ending(s, 1000, 2000, Ending::Expire), None);
            assert_eq!(ending(s, 1000, 10, Ending::Release), None);
        }
    }

    #[test]
    fn an_extension_stays_within_two_hours() {
        let ttl = Ttl::new(3600).unwrap();
        assert_eq!(
            extend("h", HoldStatus::Active, None, 0, 1000, ttl),
            Ok(3_601_000)
        );
        let late = MAX_LIFETIME_MS - 1_800_000;
        let refused = extend("h", HoldStatus::Active, None, 0, late, ttl).unwrap_err();
        assert!(refused.to_string().contains("at most 1800 s"), "{refused}");
        assert!(matches!(
            extend("h", HoldStatus::Expired, None, 0, 1, ttl),
            Err(Refusal::HoldExpired(_))
        ));
        assert!(matches!(
            extend("h", HoldStatus::Released, None, 0, 1, ttl),
            Err(Refusal::HoldReleased(_))
        ));
        assert!(matches!(
            extend("h", HoldStatus::Converted, Some("1-o"), 0, 1, ttl),
            Err(Refusal::Conflict(_))
        ));
    }
}
