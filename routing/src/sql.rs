//! How a storage layer reads routing's enums from SQL (with the `sqlx` feature): a location kind
//! and a delivery type as their text, the way [`LocationKind::as_str`] and
//! [`DeliveryType::as_str`] write them. Queries read `ENUM` columns as `CAST(x AS CHAR)`. The ids
//! derive theirs beside their types ([`crate::ProductId`], [`crate::LocationId`]).
//!
//! Generic over the database, so this crate links no driver.

use crate::{DeliveryType, LocationKind};
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

macro_rules! read_as_text {
    ($t:ty, $what:literal) => {
        impl<DB: Database> Type<DB> for $t
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $t
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<DB>>::decode(value)?;
                Self::parse(text).ok_or_else(|| format!("unknown {} {text:?}", $what).into())
            }
        }
    };
}
read_as_text!(LocationKind, "location kind");
read_as_text!(DeliveryType, "delivery type");
