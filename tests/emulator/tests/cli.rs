//! The README's CLI path, `deploy/cli/protect.sh`, against moto (AWS is out of reach here): an
//! existing function behind an existing REST API gets the layer, the variables merged into its
//! own, the right to connect to the cache, the stage throttle and the `THROTTLED` response.
//! (moto has no ElastiCache Serverless: the test names an existing cache, the script's other
//! path; the cache's template, `deploy/cli/cache.yaml`, is linted by `scripts/test.sh`.)

use std::process::Output;

use lambda_emulator::services::Moto;
use lambda_emulator::workspace;
use serde_json::Value;
use tokio::process::Command;

fn aws_env(cmd: &mut Command, moto: &Moto) {
    cmd.env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
}

async fn aws(moto: &Moto, args: &[&str]) -> Value {
    let mut cmd = Command::new("aws");
    aws_env(&mut cmd, moto);
    let out = cmd
        .args(args)
        .args(["--output", "json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn moto_setup(moto: &Moto, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(workspace().join("tests/python/moto_lambda.py"))
        .arg(moto.endpoint())
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A layer version named `name` holding a stand-in zip; its ARN.
async fn layer(moto: &Moto, name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("cli-layer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda-admission-wrapper"), b"#!/bin/sh\n").unwrap();
    let zipped = std::process::Command::new("zip")
        .current_dir(&dir)
        .args(["-q", "layer.zip", "lambda-admission-wrapper"])
        .status()
        .unwrap();
    assert!(zipped.success());
    let zip = format!("fileb://{}", dir.join("layer.zip").display());
    let v = aws(
        moto,
        &[
            "lambda",
            "publish-layer-version",
            "--layer-name",
            name,
            "--zip-file",
            &zip,
        ],
    )
    .await;
    v["LayerVersionArn"].as_str().unwrap().to_string()
}

async fn protect(moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = Command::new(workspace().join("deploy/cli/protect.sh"));
    aws_env(&mut cmd, moto);
    cmd.args(args).output().await.unwrap()
}

#[tokio::test]
async fn an_existing_function_and_api_are_wired_as_the_recipe_says() {
    let moto = Moto::start().await;
    moto_setup(&moto, &["create", "orders"]).await;
    moto_setup(&moto, &["reserve", "orders", "20"]).await;
    let api = moto_setup(&moto, &["api", "orders"]).await;
    // What the function had before: a layer of its own and a variable, both kept.
    let theirs = layer(&moto, "their-tools").await;
    aws(
        &moto,
        &[
            "lambda",
            "update-function-configuration",
            "--function-name",
            "orders",
            "--layers",
            &theirs,
            "--environment",
            "Variables={TABLE=orders,ADMISSION_COORDINATOR_TIMEOUT_MS=25}",
        ],
    )
    .await;
    let policy = aws(
        &moto,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "connect",
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"elasticache:Connect","Resource":"*"}]}"#,
        ],
    )
    .await;
    let policy_arn = policy["Policy"]["Arn"].as_str().unwrap().to_string();
    // A THROTTLED response customised before, with a CORS header and a body: both stay.
    aws(
        &moto,
        &[
            "apigateway",
            "put-gateway-response",
            "--rest-api-id",
            &api,
            "--response-type",
            "THROTTLED",
            "--status-code",
            "429",
            "--response-parameters",
            r#"{"gatewayresponse.header.Access-Control-Allow-Origin":"'*'"}"#,
            "--response-templates",
            r#"{"application/json":"{\"message\":\"slow down\"}"}"#,
        ],
    )
    .await;
    let ours = layer(&moto, "lambda-admission-x86_64").await;
    let args = [
        "--function",
        "orders",
        "--rest-api",
        &api,
        "--stage",
        "prod",
        "--layer-arn",
        &ours,
        "--cache-endpoint",
        "orders-abc.use1.cache.amazonaws.com:6379",
        "--cache-name",
        "lambda-admission",
        "--cache-user",
        "lambda-admission",
        "--cache-policy-arn",
        &policy_arn,
    ];
    let out = protect(&moto, &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let f = aws(
        &moto,
        &[
            "lambda",
            "get-function-configuration",
            "--function-name",
            "orders",
        ],
    )
    .await;
    let layers: Vec<&str> = f["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Arn"].as_str().unwrap())
        .collect();
    assert_eq!(layers, vec![theirs.as_str(), ours.as_str()]);
    let vars = &f["Environment"]["Variables"];
    assert_eq!(vars["TABLE"], "orders", "the function's own variables stay");
    assert_eq!(
        vars["AWS_LAMBDA_EXEC_WRAPPER"],
        "/opt/lambda-admission-wrapper"
    );
    assert_eq!(vars["ADMISSION_LIMIT"], "20");
    assert_eq!(vars["ADMISSION_MODE"], "enforce");
    assert_eq!(
        vars["ADMISSION_COORDINATOR"],
        "rediss://lambda-admission@orders-abc.use1.cache.amazonaws.com:6379"
    );
    assert_eq!(vars["ADMISSION_REDIS_AUTH"], "iam");
    assert_eq!(vars["ADMISSION_REDIS_IAM_CACHE"], "lambda-admission");
    assert_eq!(
        vars["ADMISSION_REDIS_IAM_SERVERLESS"], "true",
        "the token is signed for a serverless cache whatever the host says"
    );
    assert_eq!(
        vars["ADMISSION_COORDINATOR_TIMEOUT_MS"], "25",
        "a budget the user set is kept"
    );
    let role = f["Role"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let attached = aws(
        &moto,
        &["iam", "list-attached-role-policies", "--role-name", &role],
    )
    .await;
    assert_eq!(
        attached["AttachedPolicies"][0]["PolicyArn"],
        policy_arn.as_str()
    );
    let stage = aws(
        &moto,
        &[
            "apigateway",
            "get-stage",
            "--rest-api-id",
            &api,
            "--stage-name",
            "prod",
        ],
    )
    .await;
    let settings = &stage["methodSettings"]["*/*"];
    assert_eq!(settings["throttlingRateLimit"], 160.0, "{stage}");
    assert_eq!(settings["throttlingBurstLimit"], 20);
    let throttled = aws(
        &moto,
        &[
            "apigateway",
            "get-gateway-response",
            "--rest-api-id",
            &api,
            "--response-type",
            "THROTTLED",
        ],
    )
    .await;
    assert_eq!(throttled["statusCode"], "429");
    assert_eq!(
        throttled["responseParameters"]["gatewayresponse.header.Retry-After"],
        "'1'"
    );
    assert_eq!(
        throttled["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"],
        "'*'",
        "{throttled}"
    );
    assert_eq!(
        throttled["responseTemplates"]["application/json"],
        r#"{"message":"slow down"}"#
    );

    // Again with a new version of the layer and a new N: replaced, not added.
    moto_setup(&moto, &["reserve", "orders", "50"]).await;
    let newer = layer(&moto, "lambda-admission-x86_64").await;
    let mut again = args.to_vec();
    again[7] = &newer;
    again.extend(["--cache-serverless", "no"]);
    let out = protect(&moto, &again).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = aws(
        &moto,
        &[
            "lambda",
            "get-function-configuration",
            "--function-name",
            "orders",
        ],
    )
    .await;
    let layers: Vec<&str> = f["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Arn"].as_str().unwrap())
        .collect();
    assert_eq!(layers, vec![theirs.as_str(), newer.as_str()]);
    assert_eq!(f["Environment"]["Variables"]["ADMISSION_LIMIT"], "50");
    assert_eq!(
        f["Environment"]["Variables"]["ADMISSION_REDIS_IAM_SERVERLESS"],
        "false"
    );
    let stage = aws(
        &moto,
        &[
            "apigateway",
            "get-stage",
            "--rest-api-id",
            &api,
            "--stage-name",
            "prod",
        ],
    )
    .await;
    assert_eq!(stage["methodSettings"]["*/*"]["throttlingRateLimit"], 400.0);
}

#[tokio::test]
async fn a_function_without_reserved_concurrency_is_refused_with_the_fix() {
    let moto = Moto::start().await;
    moto_setup(&moto, &["create", "open"]).await;
    let out = protect(
        &moto,
        &[
            "--function",
            "open",
            "--rest-api",
            "x",
            "--stage",
            "prod",
            "--layer-arn",
            "arn",
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no reserved concurrency") && stderr.contains("put-function-concurrency"),
        "{stderr}"
    );
    let out = protect(&moto, &["--function", "open"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = protect(
        &moto,
        &[
            "--function",
            "f",
            "--rest-api",
            "x",
            "--stage",
            "p",
            "--mode",
            "shed",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}
