//! A CloudFormation template read as the recipe it deploys, so that the emulator runs what a user
//! deploys: the protected function's reserved concurrency and `ADMISSION_*` variables, and the API
//! Gateway stage's throttle and `THROTTLED` response in front of it.
//!
//! Reads templates as CloudFormation does for what the recipe needs: parameters (their defaults,
//! or values given), `Conditions`, `Rules` (an assertion that fails refuses the template, as a
//! stack creation would), and the intrinsic functions that settings are written with (`Ref`,
//! `Fn::If`, `Fn::FindInMap`, `Fn::Sub`, `Fn::Join`, `Fn::Split`, `Fn::Select`,
//! `Fn::Equals`/`Not`/`And`/`Or`/`Contains`). What only
//! exists once deployed (the cache's endpoint, `Fn::GetAtt`) is the one thing the emulator
//! replaces: the coordinator becomes the emulator's Redis, without IAM (the IAM path has its own
//! tests against a TLS front that checks tokens). Both CloudFormation's own resource types (what
//! `cdk synth` writes) and SAM's (`AWS::Serverless::Function`, `AWS::Serverless::Api`) are read;
//! YAML is turned into JSON first by `tests/python/cfn_to_json.py` (PyYAML, which moto brings).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::fleet::StageThrottle;

/// What a template deploys, as the emulator runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRecipe {
    /// The protected function's logical id.
    pub function: String,
    /// Its reserved concurrency: the fleet's environments.
    pub reserved_concurrency: usize,
    /// The `ADMISSION_*` variables as the extension sees them, with the coordinator's endpoint
    /// and IAM settings left out (see [`TemplateRecipe::coordinator`]).
    pub variables: Vec<(String, String)>,
    pub coordinator: Coordinator,
    /// The stage throttle and the `THROTTLED` response's `Retry-After`, if the API sets them.
    pub stage: Option<StageThrottle>,
}

/// Who counts, per the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinator {
    Local,
    /// A Redis or Valkey the function connects to (its endpoint replaced by the emulator's);
    /// `iam`: with `ADMISSION_REDIS_AUTH=iam`.
    Shared {
        iam: bool,
    },
}

/// Variables the emulator supplies itself: the endpoint only exists once deployed, and IAM
/// tokens need AWS.
const REPLACED: &[&str] = &[
    "ADMISSION_COORDINATOR",
    "ADMISSION_REDIS_AUTH",
    "ADMISSION_REDIS_IAM_CACHE",
    "ADMISSION_REDIS_IAM_SERVERLESS",
    "ADMISSION_REDIS_IAM_TOKEN_TTL",
    "ADMISSION_REDIS_CA_FILE",
];

const WRAPPER: &str = "/opt/lambda-admission-wrapper";

/// Reads the recipe from the template at `path`, with these parameter values over the defaults.
pub fn read(path: &Path, parameters: &[(String, String)]) -> Result<TemplateRecipe, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let text = if yaml { yaml_to_json(path)? } else { text };
    let template: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a JSON template ({e})", path.display()))?;
    recipe(&template, parameters)
}

fn yaml_to_json(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("python3")
        .arg(crate::workspace().join("tests/python/cfn_to_json.py"))
        .arg(path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// [`read`], from the parsed template.
pub fn recipe(template: &Value, parameters: &[(String, String)]) -> Result<TemplateRecipe, String> {
    let t = Template::new(template, parameters)?;
    t.check_rules()?;
    let resources = t.resources();
    let protected: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(_, r)| {
            is_function(r)
                && t.variables(r)
                    .ok()
                    .and_then(|v| v.get("AWS_LAMBDA_EXEC_WRAPPER").cloned())
                    .is_some_and(|w| w == Value::String(WRAPPER.into()))
        })
        .map(|&(id, r)| (id, r))
        .collect();
    let (id, function) = match protected.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "no function in the template has AWS_LAMBDA_EXEC_WRAPPER={WRAPPER}: nothing is \
                 protected"
            ))
        }
        more => {
            return Err(format!(
                "{} protected functions ({}): the emulator runs one",
                more.len(),
                more.iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    let props = &function["Properties"];
    let reserved = t
        .resolve(&props["ReservedConcurrentExecutions"])?
        .as_number_like()
        .ok_or_else(|| format!("{id} has no ReservedConcurrentExecutions"))?;
    if props["Layers"].is_null() {
        return Err(format!("{id} sets the wrapper but has no layers"));
    }
    let mut variables = Vec::new();
    let mut coordinator = Coordinator::Local;
    let mut iam = false;
    for (name, value) in t.variables(function)? {
        if !name.starts_with("ADMISSION_") {
            continue;
        }
        if name == "ADMISSION_REDIS_AUTH" {
            iam = value.as_str().is_some_and(|v| v.trim() == "iam");
        }
        if name == "ADMISSION_COORDINATOR" {
            let local = matches!(value.as_str().map(str::trim), Some("local" | ""));
            if !local {
                coordinator = Coordinator::Shared { iam: false };
            }
        }
        if REPLACED.contains(&name.as_str()) {
            continue;
        }
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{id}: {name} is {other} once resolved: only what exists once deployed \
                     (the cache's endpoint) can be left to the emulator"
                ))
            }
        };
        variables.push((name, text));
    }
    if let Coordinator::Shared { .. } = coordinator {
        coordinator = Coordinator::Shared { iam };
    }
    Ok(TemplateRecipe {
        function: id.clone(),
        reserved_concurrency: reserved as usize,
        variables,
        coordinator,
        stage: t.stage_throttle()?,
    })
}

fn is_function(r: &Value) -> bool {
    matches!(
        r["Type"].as_str(),
        Some("AWS::Lambda::Function" | "AWS::Serverless::Function")
    )
}

trait NumberLike {
    fn as_number_like(&self) -> Option<f64>;
}

impl NumberLike for Value {
    fn as_number_like(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// A template with its parameters' values, resolving intrinsic functions.
struct Template<'a> {
    root: &'a Value,
    parameters: BTreeMap<String, Value>,
}

/// Marks a value that exists only once deployed (`Fn::GetAtt`, a resource's `Ref`).
const DEPLOYED: &str = "\u{0}deployed";

impl<'a> Template<'a> {
    fn new(root: &'a Value, given: &[(String, String)]) -> Result<Template<'a>, String> {
        let mut parameters = BTreeMap::new();
        let declared = root["Parameters"].as_object().cloned().unwrap_or_default();
        // List parameters (`CommaDelimitedList`, `List<...>`) are lists once referenced.
        let typed = |p: &Value, v: &Value| -> Value {
            let list = p["Type"]
                .as_str()
                .is_some_and(|t| t == "CommaDelimitedList" || t.starts_with("List<"));
            match (list, v) {
                (true, Value::String(s)) => Value::Array(
                    s.split(',')
                        .map(|x| Value::String(x.trim().into()))
                        .collect(),
                ),
                _ => v.clone(),
            }
        };
        for (name, p) in &declared {
            if let Some(default) = p.get("Default") {
                parameters.insert(name.clone(), typed(p, default));
            }
        }
        for (name, value) in given {
            let Some(p) = declared.get(name) else {
                return Err(format!("the template has no parameter {name}"));
            };
            if let Some(allowed) = p["AllowedValues"].as_array() {
                if !allowed
                    .iter()
                    .any(|a| same_scalar(a, &Value::String(value.clone())))
                {
                    return Err(format!(
                        "{name}={value} is not among its AllowedValues {allowed:?}"
                    ));
                }
            }
            parameters.insert(name.clone(), typed(p, &Value::String(value.clone())));
        }
        Ok(Template { root, parameters })
    }

    fn resources(&self) -> Vec<(&'a String, &'a Value)> {
        self.root["Resources"]
            .as_object()
            .map(|m| m.iter().collect())
            .unwrap_or_default()
    }

    /// The function's environment variables, resolved.
    fn variables(&self, function: &Value) -> Result<Map<String, Value>, String> {
        let vars = &function["Properties"]["Environment"]["Variables"];
        let resolved = self.resolve(vars)?;
        Ok(resolved.as_object().cloned().unwrap_or_default())
    }

    /// Every `Rules` entry whose condition holds must have its assertions hold.
    fn check_rules(&self) -> Result<(), String> {
        let Some(rules) = self.root["Rules"].as_object() else {
            return Ok(());
        };
        for (name, rule) in rules {
            let applies = match rule.get("RuleCondition") {
                Some(c) => truthy(&self.resolve(c)?),
                None => true,
            };
            if !applies {
                continue;
            }
            for assertion in rule["Assertions"].as_array().into_iter().flatten() {
                if !truthy(&self.resolve(&assertion["Assert"])?) {
                    let why = assertion["AssertDescription"].as_str().unwrap_or("");
                    return Err(format!(
                        "the template's rule {name} refuses these parameters: {why}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let c = self.root["Conditions"]
            .get(name)
            .ok_or_else(|| format!("no condition {name}"))?;
        Ok(truthy(&self.resolve(c)?))
    }

    /// `value` with its intrinsic functions evaluated. `AWS::NoValue` becomes `null`, and
    /// properties resolving to it are dropped.
    fn resolve(&self, value: &Value) -> Result<Value, String> {
        match value {
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    let v = self.resolve(item)?;
                    if !v.is_null() || item.is_null() {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            }
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                match key.as_str() {
                    "Ref" => self.reference(arg),
                    "Condition" => Ok(Value::Bool(self.condition(str_arg(arg)?)?)),
                    k if k.starts_with("Fn::") => self.function(k, arg),
                    _ => self.object(map),
                }
            }
            Value::Object(map) => self.object(map),
            other => Ok(other.clone()),
        }
    }

    fn object(&self, map: &Map<String, Value>) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in map {
            let r = self.resolve(v)?;
            if !r.is_null() || v.is_null() {
                out.insert(k.clone(), r);
            }
        }
        Ok(Value::Object(out))
    }

    fn reference(&self, arg: &Value) -> Result<Value, String> {
        let name = str_arg(arg)?;
        if name == "AWS::NoValue" {
            return Ok(Value::Null);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(v.clone());
        }
        if self.root["Parameters"].get(name).is_some() {
            return Err(format!(
                "parameter {name} has no default and no value was given"
            ));
        }
        let pseudo = match name {
            "AWS::Region" => Some("us-east-1"),
            "AWS::AccountId" => Some("123456789012"),
            "AWS::Partition" => Some("aws"),
            "AWS::URLSuffix" => Some("amazonaws.com"),
            "AWS::StackName" => Some("stack"),
            _ => None,
        };
        match pseudo {
            Some(p) => Ok(Value::String(p.into())),
            None => Ok(Value::String(DEPLOYED.into())),
        }
    }

    fn function(&self, name: &str, arg: &Value) -> Result<Value, String> {
        let args = || arg.as_array().ok_or_else(|| format!("{name} takes a list"));
        match name {
            "Fn::GetAtt" | "Fn::ImportValue" | "Fn::GetAZs" | "Fn::Base64" | "Fn::Cidr" => {
                Ok(Value::String(DEPLOYED.into()))
            }
            "Fn::If" => {
                let a = args()?;
                let [cond, then, otherwise] = a.as_slice() else {
                    return Err("Fn::If takes three arguments".into());
                };
                if self.condition(str_arg(cond)?)? {
                    self.resolve(then)
                } else {
                    self.resolve(otherwise)
                }
            }
            "Fn::Equals" => {
                let a = args()?;
                let [x, y] = a.as_slice() else {
                    return Err("Fn::Equals takes two arguments".into());
                };
                Ok(Value::Bool(same_scalar(
                    &self.resolve(x)?,
                    &self.resolve(y)?,
                )))
            }
            "Fn::Not" => {
                let a = args()?;
                let [x] = a.as_slice() else {
                    return Err("Fn::Not takes one argument".into());
                };
                Ok(Value::Bool(!truthy(&self.resolve(x)?)))
            }
            "Fn::And" | "Fn::Or" => {
                let mut all = Vec::new();
                for x in args()? {
                    all.push(truthy(&self.resolve(x)?));
                }
                Ok(Value::Bool(if name == "Fn::And" {
                    all.iter().all(|b| *b)
                } else {
                    all.iter().any(|b| *b)
                }))
            }
            "Fn::Contains" => {
                let a = args()?;
                let [list, x] = a.as_slice() else {
                    return Err("Fn::Contains takes two arguments".into());
                };
                let x = self.resolve(x)?;
                let list = self.resolve(list)?;
                Ok(Value::Bool(
                    list.as_array()
                        .is_some_and(|l| l.iter().any(|v| same_scalar(v, &x))),
                ))
            }
            "Fn::FindInMap" => {
                let a = args()?;
                let keys: Vec<String> = a
                    .iter()
                    .take(3)
                    .map(|k| self.resolve(k).map(|v| scalar_text(&v)))
                    .collect::<Result<_, _>>()?;
                let [map, top, second] = keys.as_slice() else {
                    return Err("Fn::FindInMap takes three keys".into());
                };
                self.root["Mappings"][map][top]
                    .get(second)
                    .cloned()
                    .ok_or_else(|| format!("Fn::FindInMap: no {map}.{top}.{second}"))
            }
            "Fn::Join" => {
                let a = args()?;
                let [sep, list] = a.as_slice() else {
                    return Err("Fn::Join takes two arguments".into());
                };
                let list = self.resolve(list)?;
                let parts: Vec<String> = list
                    .as_array()
                    .ok_or("Fn::Join joins a list")?
                    .iter()
                    .map(scalar_text)
                    .collect();
                Ok(Value::String(parts.join(str_arg(sep)?)))
            }
            "Fn::Select" => {
                let a = args()?;
                let [i, list] = a.as_slice() else {
                    return Err("Fn::Select takes two arguments".into());
                };
                let i = self
                    .resolve(i)?
                    .as_number_like()
                    .ok_or("Fn::Select index")? as usize;
                Ok(self.resolve(list)?.get(i).cloned().unwrap_or(Value::Null))
            }
            "Fn::Split" => {
                let a = args()?;
                let [sep, text] = a.as_slice() else {
                    return Err("Fn::Split takes two arguments".into());
                };
                let text = scalar_text(&self.resolve(text)?);
                Ok(Value::Array(
                    text.split(str_arg(sep)?)
                        .map(|p| Value::String(p.into()))
                        .collect(),
                ))
            }
            "Fn::Sub" => self.sub(arg),
            other => Err(format!(
                "{other} is not read by the emulator's template reader"
            )),
        }
    }

    fn sub(&self, arg: &Value) -> Result<Value, String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), Map::new()),
            Value::Array(a) => match a.as_slice() {
                [Value::String(s), Value::Object(v)] => (s.as_str(), v.clone()),
                _ => return Err("Fn::Sub takes a string, or a string and a map".into()),
            },
            _ => return Err("Fn::Sub takes a string".into()),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("Fn::Sub: unclosed ${")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&scalar_text(&self.resolve(v)?));
            } else if name.contains('.') {
                out.push_str(DEPLOYED); // Resource.Attribute
            } else {
                out.push_str(&scalar_text(&self.reference(&Value::String(name.into()))?));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    /// The throttle of the stage in front of the function (`/*/*` method settings) and the
    /// `THROTTLED` gateway response's `Retry-After`, whether written as CloudFormation's
    /// resources or SAM's `AWS::Serverless::Api`.
    fn stage_throttle(&self) -> Result<Option<StageThrottle>, String> {
        let mut settings = None;
        let mut retry_after = None;
        for (id, r) in self.resources() {
            let props = self.resolve(&r["Properties"])?;
            match r["Type"].as_str() {
                Some("AWS::ApiGateway::Stage" | "AWS::Serverless::Api") => {
                    for m in props["MethodSettings"].as_array().into_iter().flatten() {
                        let all = m["HttpMethod"] == "*" && m["ResourcePath"] == "/*";
                        let rate = m["ThrottlingRateLimit"].as_number_like();
                        let burst = m["ThrottlingBurstLimit"].as_number_like();
                        if let (true, Some(rate), Some(burst)) = (all, rate, burst) {
                            if settings.is_some() {
                                return Err(format!("{id}: a second stage throttle"));
                            }
                            settings = Some((rate, burst));
                        }
                    }
                    let throttled = &props["GatewayResponses"]["THROTTLED"];
                    if !throttled.is_null() {
                        retry_after = retry_after.or(header_seconds(
                            &throttled["ResponseParameters"]["Headers"]["Retry-After"],
                        ));
                    }
                }
                Some("AWS::ApiGateway::GatewayResponse")
                    if props["ResponseType"] == "THROTTLED" =>
                {
                    retry_after = retry_after.or(header_seconds(
                        &props["ResponseParameters"]["gatewayresponse.header.Retry-After"],
                    ));
                }
                _ => {}
            }
        }
        Ok(settings.map(|(rate, burst)| StageThrottle {
            rate,
            burst,
            retry_after,
        }))
    }
}

/// `"'1'"`, a gateway response's static header value, as seconds.
fn header_seconds(v: &Value) -> Option<u64> {
    v.as_str()?.trim().trim_matches('\'').parse().ok()
}

fn str_arg(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {v}"))
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// CloudFormation compares parameters as strings: `20` equals `"20"`.
fn same_scalar(a: &Value, b: &Value) -> bool {
    scalar_text(a) == scalar_text(b)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `cdk synth` writes for the recipe, trimmed to what is read.
    fn synthesized() -> Value {
        json!({
            "Resources": {
                "Cache": {"Type": "AWS::ElastiCache::ServerlessCache", "Properties": {"Engine": "valkey"}},
                "Fn": {"Type": "AWS::Lambda::Function", "Properties": {
                    "ReservedConcurrentExecutions": 20,
                    "Layers": [{"Ref": "AdmissionLayer"}],
                    "Environment": {"Variables": {
                        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambda-admission-wrapper",
                        "ADMISSION_LIMIT": "20",
                        "ADMISSION_COORDINATOR": {"Fn::Join": ["", ["rediss://lambda-admission@",
                            {"Fn::GetAtt": ["Cache", "Endpoint.Address"]}, ":6379"]]},
                        "ADMISSION_REDIS_AUTH": "iam",
                        "ADMISSION_REDIS_IAM_CACHE": {"Ref": "Cache"},
                        "ADMISSION_COORDINATOR_TIMEOUT_MS": "15",
                        "OTHER": "x"
                    }}
                }},
                "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"MethodSettings": [
                    {"HttpMethod": "*", "ResourcePath": "/*", "ThrottlingRateLimit": 160, "ThrottlingBurstLimit": 20}
                ]}},
                "Throttled": {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": {
                    "ResponseType": "THROTTLED", "StatusCode": "429",
                    "ResponseParameters": {"gatewayresponse.header.Retry-After": "'1'"}
                }}
            }
        })
    }

    #[test]
    fn a_synthesized_recipe_is_read_with_the_endpoint_left_to_the_emulator() {
        let r = recipe(&synthesized(), &[]).unwrap();
        assert_eq!(r.function, "Fn");
        assert_eq!(r.reserved_concurrency, 20);
        assert_eq!(r.coordinator, Coordinator::Shared { iam: true });
        assert_eq!(
            r.variables,
            vec![
                (
                    "ADMISSION_COORDINATOR_TIMEOUT_MS".to_string(),
                    "15".to_string()
                ),
                ("ADMISSION_LIMIT".to_string(), "20".to_string()),
            ]
        );
        assert_eq!(
            r.stage,
            Some(StageThrottle {
                rate: 160.0,
                burst: 20.0,
                retry_after: Some(1)
            })
        );
    }

    #[test]
    fn a_template_that_protects_nothing_is_refused() {
        let mut t = synthesized();
        t["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]
            .as_object_mut()
            .unwrap()
            .remove("AWS_LAMBDA_EXEC_WRAPPER");
        assert!(recipe(&t, &[])
            .unwrap_err()
            .contains("nothing is protected"));
        let mut t = synthesized();
        t["Resources"]["Fn"]["Properties"]
            .as_object_mut()
            .unwrap()
            .remove("ReservedConcurrentExecutions");
        assert!(recipe(&t, &[])
            .unwrap_err()
            .contains("ReservedConcurrentExecutions"));
    }

    #[test]
    fn an_unresolvable_setting_is_an_error_not_a_guess() {
        let mut t = synthesized();
        t["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]["ADMISSION_LIMIT"] =
            json!({"Fn::Transform": {}});
        assert!(recipe(&t, &[]).is_err());
    }

    /// SAM's resource types, parameters, mappings, conditions and rules.
    fn sam() -> Value {
        json!({
            "Parameters": {
                "ReservedConcurrency": {"Type": "Number", "Default": "20", "AllowedValues": ["10", "20"]},
                "Coordinator": {"Type": "String", "Default": "valkey-serverless",
                    "AllowedValues": ["valkey-serverless", "redis", "local"]},
                "Acknowledge": {"Type": "String", "Default": "no"},
                "Mode": {"Type": "String", "Default": "enforce"}
            },
            "Mappings": {"Sizes": {
                "N10": {"Rate": 80, "Burst": 10},
                "N20": {"Rate": 160, "Burst": 20}
            }},
            "Conditions": {
                "IsLocal": {"Fn::Equals": [{"Ref": "Coordinator"}, "local"]},
                "IsValkey": {"Fn::Equals": [{"Ref": "Coordinator"}, "valkey-serverless"]}
            },
            "Rules": {"LocalIsExplicit": {
                "RuleCondition": {"Fn::Equals": [{"Ref": "Coordinator"}, "local"]},
                "Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "Acknowledge"}, "yes"]},
                    "AssertDescription": "local protects nothing on demand"}]
            }},
            "Resources": {
                "Function": {"Type": "AWS::Serverless::Function", "Properties": {
                    "ReservedConcurrentExecutions": {"Ref": "ReservedConcurrency"},
                    "Layers": [{"Ref": "Layer"}],
                    "Environment": {"Variables": {
                        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambda-admission-wrapper",
                        "ADMISSION_LIMIT": {"Ref": "ReservedConcurrency"},
                        "ADMISSION_MODE": {"Ref": "Mode"},
                        "ADMISSION_COORDINATOR": {"Fn::If": ["IsLocal", "local",
                            {"Fn::Sub": "rediss://lambda-admission@${Cache.Endpoint.Address}:${Cache.Endpoint.Port}"}]},
                        "ADMISSION_REDIS_AUTH": {"Fn::If": ["IsValkey", "iam", {"Ref": "AWS::NoValue"}]}
                    }}
                }},
                "Api": {"Type": "AWS::Serverless::Api", "Properties": {
                    "MethodSettings": [{"HttpMethod": "*", "ResourcePath": "/*",
                        "ThrottlingRateLimit": {"Fn::FindInMap": ["Sizes", {"Fn::Sub": "N${ReservedConcurrency}"}, "Rate"]},
                        "ThrottlingBurstLimit": {"Fn::FindInMap": ["Sizes", {"Fn::Sub": "N${ReservedConcurrency}"}, "Burst"]}}],
                    "GatewayResponses": {"THROTTLED": {"StatusCode": 429,
                        "ResponseParameters": {"Headers": {"Retry-After": "'1'"}}}}
                }}
            }
        })
    }

    #[test]
    fn a_sam_template_is_read_with_its_parameters() {
        let r = recipe(&sam(), &[]).unwrap();
        assert_eq!(r.reserved_concurrency, 20);
        assert_eq!(r.coordinator, Coordinator::Shared { iam: true });
        assert_eq!(
            r.stage.map(|s| (s.rate, s.burst, s.retry_after)),
            Some((160.0, 20.0, Some(1)))
        );
        let r = recipe(&sam(), &[("ReservedConcurrency".into(), "10".into())]).unwrap();
        assert_eq!(r.reserved_concurrency, 10);
        assert_eq!(r.stage.map(|s| (s.rate, s.burst)), Some((80.0, 10.0)));
        assert!(r
            .variables
            .contains(&("ADMISSION_LIMIT".into(), "10".into())));
    }

    #[test]
    fn a_rule_that_fails_refuses_the_parameters() {
        let local = [("Coordinator".to_string(), "local".to_string())];
        let e = recipe(&sam(), &local).unwrap_err();
        assert!(
            e.contains("LocalIsExplicit") && e.contains("protects nothing"),
            "{e}"
        );
        let acknowledged = [
            ("Coordinator".to_string(), "local".to_string()),
            ("Acknowledge".to_string(), "yes".to_string()),
        ];
        let r = recipe(&sam(), &acknowledged).unwrap();
        assert_eq!(r.coordinator, Coordinator::Local);
        let e = recipe(&sam(), &[("Coordinator".into(), "memcached".into())]).unwrap_err();
        assert!(e.contains("AllowedValues"), "{e}");
    }
}
