//! Request and response bodies of the wire contract (camelCase JSON), and the one place where a
//! request becomes validated domain values.

mod bodies;
mod calendar;
mod holds;
mod patterns;
mod requests;
mod text;

pub use bodies::*;
pub use calendar::*;
pub use holds::*;
pub use patterns::{add_parameter_patterns, Matches, IDEMPOTENCY_KEY, NEAR};
pub use requests::*;
pub use text::Text;

#[cfg(test)]
mod tests {
    use poem_openapi::types::{Example, ToJSON};

    /// The serde rendering the product pages send is the JSON the spec describes.
    #[test]
    fn product_bodies_render_as_the_spec_describes() {
        fn same<T: ToJSON + serde::Serialize>(v: &T) {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_json().unwrap());
        }
        same(&super::ProductBody::example());
        let mut list = super::ProductList::example();
        same(&list);
        list.next = None;
        same(&list);
        assert!(!serde_json::to_string(&list).unwrap().contains("next"));
    }

    #[test]
    fn order_bodies_render_as_the_spec_describes() {
        use super::{DeliveryTypeBody, OrderPathBody, OrderStatusBody};
        fn same<T: ToJSON + serde::Serialize>(v: &T) {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_json().unwrap());
        }
        let mut order = super::OrderBody::example();
        same(&order);
        // Every status, path and delivery type; no distance or address; a rejection's reason.
        for (status, path, delivery) in [
            (
                OrderStatusBody::Confirmed,
                OrderPathBody::DbLock,
                DeliveryTypeBody::SameDay,
            ),
            (
                OrderStatusBody::Cancelled,
                OrderPathBody::Pos,
                DeliveryTypeBody::InStore,
            ),
            (
                OrderStatusBody::Rejected,
                OrderPathBody::Redis,
                DeliveryTypeBody::Pickup,
            ),
        ] {
            order.status = status;
            order.path = path;
            order.delivery_type = delivery;
            order.distance_km = None;
            order.delivery_address = None;
            order.reject_reason = Some("MySQL did not have the units".into());
            same(&order);
        }
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "REJECTED");
        assert_eq!(json["deliveryType"], "PICKUP");
        assert_eq!(json["distanceKm"], serde_json::Value::Null);
        order.reject_reason = None;
        same(&order);
        assert!(serde_json::to_value(&order)
            .unwrap()
            .get("rejectReason")
            .is_none());
    }

    /// The `Idempotency-Key` fingerprint is taken of the flat body every order request was before
    /// the schema was split by delivery type, byte for byte, so keys stored before still match.
    #[test]
    fn order_requests_are_fingerprinted_as_the_flat_body_they_always_were() {
        use super::OrderRequest;
        use poem_openapi::types::ParseFromJSON;
        let fingerprinted = |body: serde_json::Value| {
            serde_json::to_string(&OrderRequest::parse_from_json(Some(body)).unwrap()).unwrap()
        };
        let items = serde_json::json!([{"productId": 1, "quantity": 2}]);
        let at = serde_json::json!({"latitude": 37.5665, "longitude": 126.978});
        assert_eq!(
            fingerprinted(
                serde_json::json!({"items": items, "deliveryType": "NORMAL", "deliveryAddress": at, "storeId": null})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"NORMAL","deliveryAddress":{"latitude":37.5665,"longitude":126.978},"storeId":null}"#
        );
        assert_eq!(
            fingerprinted(
                serde_json::json!({"storeId": 7, "deliveryType": "PICKUP", "items": items})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"PICKUP","deliveryAddress":null,"storeId":7}"#
        );
        assert_eq!(
            fingerprinted(
                serde_json::json!({"items": items, "deliveryType": "SAME_DAY", "deliveryAddress": at})
            ),
            r#"{"items":[{"productId":1,"quantity":2}],"deliveryType":"SAME_DAY","deliveryAddress":{"latitude":37.5665,"longitude":126.978},"storeId":null}"#
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(super::bodies::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::bodies::rfc3339(1_795_510_800_123),
            "2026-11-24T09:00:00.123Z"
        );
    }
}
