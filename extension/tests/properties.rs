//! Properties of what the extension reads from outside: events and configuration. Arbitrary input
//! never panics (a panic aborts the extension and cuts the function off its Runtime API), never
//! makes an event that is not an HTTP request sheddable, and a rejected setting always names its
//! variable.

use std::collections::HashMap;

use lambda_admission::config::{Config, VARIABLES};
use lambda_admission::decision::front_door::FrontDoor;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Arbitrary JSON, a few levels deep, with keys drawn from the ones classification looks at.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("httpMethod".to_string()),
        Just("version".to_string()),
        Just("headers".to_string()),
        Just("multiValueHeaders".to_string()),
        Just("http".to_string()),
        Just("elb".to_string()),
        Just("user-agent".to_string()),
        Just("body".to_string()),
        "[a-zA-Z-]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("2.0")),
        Just(json!("ELB-HealthChecker/2.0")),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = FrontDoor::classify(&bytes);
    }

    #[test]
    fn an_event_without_a_request_context_is_never_sheddable(v in json_value()) {
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.remove("requestContext");
        }
        prop_assert_eq!(FrontDoor::classify(v.to_string().as_bytes()), None);
    }

    #[test]
    fn authorizer_calls_are_never_sheddable(v in json_value(), rest in any::<bool>()) {
        let mut m = match v { Value::Object(m) => m, _ => Map::new() };
        m.insert(if rest { "methodArn" } else { "routeArn" }.into(), json!("arn:aws:execute-api:x"));
        m.insert("httpMethod".into(), json!("GET"));
        m.insert("requestContext".into(), json!({"stage": "p", "http": {"method": "GET"}}));
        prop_assert_eq!(FrontDoor::classify(Value::Object(m).to_string().as_bytes()), None);
    }

    #[test]
    fn a_rest_request_is_sheddable_whatever_else_it_carries(extra in json_value()) {
        let mut m = match extra { Value::Object(m) => m, _ => Map::new() };
        for k in ["methodArn", "routeArn", "headers", "multiValueHeaders", "version"] {
            m.remove(k);
        }
        m.insert("httpMethod".into(), json!("POST"));
        m.insert("requestContext".into(), json!({"stage": "p"}));
        prop_assert_eq!(
            FrontDoor::classify(Value::Object(m).to_string().as_bytes()),
            Some(FrontDoor::ApiGatewayV1)
        );
    }

    #[test]
    fn configuration_never_panics_and_errors_name_their_variable(
        values in prop::collection::vec((0..VARIABLES.len(), ".{0,24}"), 0..6)
    ) {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into());
        for (i, value) in &values {
            env.insert(VARIABLES[*i].name.to_string(), value.clone());
        }
        if let Err(errors) = Config::from_strings(&env) {
            prop_assert!(!errors.0.is_empty());
            for e in errors.0 {
                prop_assert!(VARIABLES.iter().any(|v| v.name == e.name), "{}", e.name);
                prop_assert!(e.to_string().contains(e.name));
            }
        }
    }
}
