//! `scripts/publish-layer.sh` against moto's Lambda server: each architecture published to each
//! region, made public on request, the result printed as JSON, and what Lambda holds read back
//! with the AWS CLI (moto stands in for AWS, which these machines cannot reach).

use std::path::{Path, PathBuf};
use std::process::Output;

use lambda_emulator::services::Moto;
use lambda_emulator::workspace;
use serde_json::Value;
use tokio::process::Command;

/// A directory holding a stand-in `lambda-admission-x86_64.zip` (the script is under test here,
/// not the build), and the zip's size and base64 SHA-256 as Lambda reports them.
fn stand_in_dist(name: &str) -> (PathBuf, u64, String) {
    let dir = std::env::temp_dir().join(format!("publish-layer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("extensions")).unwrap();
    std::fs::write(dir.join("extensions/lambda-admission"), b"#!/bin/sh\n").unwrap();
    let zipped = std::process::Command::new("zip")
        .current_dir(&dir)
        .args([
            "-q",
            "-X",
            "-r",
            "lambda-admission-x86_64.zip",
            "extensions",
        ])
        .status()
        .expect("zip");
    assert!(zipped.success());
    let zip = dir.join("lambda-admission-x86_64.zip");
    let size = std::fs::metadata(&zip).unwrap().len();
    let sha = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,hashlib,sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1],'rb').read()).digest()).decode())",
        ])
        .arg(&zip)
        .output()
        .unwrap();
    (
        dir,
        size,
        String::from_utf8_lossy(&sha.stdout).trim().to_string(),
    )
}

fn aws_env(cmd: &mut Command, moto: &Moto) {
    cmd.env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_REGION");
}

async fn publish(moto: &Moto, dist: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(workspace().join("scripts/publish-layer.sh"));
    aws_env(&mut cmd, moto);
    cmd.arg("--dist").arg(dist).args(args);
    cmd.output().await.expect("publish-layer.sh")
}

async fn aws(moto: &Moto, args: &[&str]) -> Result<Value, String> {
    let mut cmd = Command::new("aws");
    aws_env(&mut cmd, moto);
    let out = cmd
        .args(args)
        .args(["--output", "json"])
        .output()
        .await
        .expect("the AWS CLI");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[tokio::test]
async fn each_architecture_goes_to_each_region_and_is_read_back() {
    let moto = Moto::start().await;
    let (dist, size, sha) = stand_in_dist("read-back");
    let out = publish(
        &moto,
        &dist,
        &[
            "--regions",
            "us-east-1, eu-west-1",
            "--arch",
            "x86_64",
            "--public",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON array");
    let printed = printed.as_array().expect("an array");
    assert_eq!(printed.len(), 2, "{printed:?}");
    for (entry, region) in printed.iter().zip(["us-east-1", "eu-west-1"]) {
        assert_eq!(entry["region"], region);
        assert_eq!(entry["arch"], "x86_64");
        assert_eq!(entry["version"], 1);
        let arn = entry["arn"].as_str().unwrap();
        assert!(
            arn.starts_with(&format!("arn:aws:lambda:{region}:"))
                && arn.ends_with(":layer:lambda-admission-x86_64:1"),
            "{arn}"
        );
        // What Lambda holds: this zip, for this architecture, public.
        let layer = aws(
            &moto,
            &[
                "lambda",
                "get-layer-version",
                "--region",
                region,
                "--layer-name",
                "lambda-admission-x86_64",
                "--version-number",
                "1",
            ],
        )
        .await
        .unwrap();
        assert_eq!(layer["LayerVersionArn"], arn);
        assert_eq!(
            layer["CompatibleArchitectures"],
            serde_json::json!(["x86_64"])
        );
        assert_eq!(layer["Content"]["CodeSize"], size);
        assert_eq!(layer["Content"]["CodeSha256"], sha.as_str());
        assert_eq!(layer["LicenseInfo"], "Apache-2.0");
        let policy = aws(
            &moto,
            &[
                "lambda",
                "get-layer-version-policy",
                "--region",
                region,
                "--layer-name",
                "lambda-admission-x86_64",
                "--version-number",
                "1",
            ],
        )
        .await
        .unwrap();
        let policy: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Action"], "lambda:GetLayerVersion");
        assert_eq!(statement["Principal"], "*");
        assert_eq!(statement["Effect"], "Allow");
    }
    // Without --public: a new version, and no one else may read it.
    let out = publish(
        &moto,
        &dist,
        &["--regions", "us-east-1", "--arch", "x86_64"],
    )
    .await;
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed[0]["version"], 2);
    let policy = aws(
        &moto,
        &[
            "lambda",
            "get-layer-version-policy",
            "--region",
            "us-east-1",
            "--layer-name",
            "lambda-admission-x86_64",
            "--version-number",
            "2",
        ],
    )
    .await;
    assert!(policy.is_err(), "version 2 is private: {policy:?}");
    let _ = std::fs::remove_dir_all(dist);
}

#[tokio::test]
async fn bad_arguments_and_unreachable_endpoints_print_nothing_on_stdout() {
    let moto = Moto::start().await;
    let (dist, ..) = stand_in_dist("bad");
    for args in [
        &["--arch", "x86_64"][..],
        &["--regions", "us-east-1", "--arch", "sparc"],
        &["--regions", "us-east-1", "--bogus"],
        &["--regions", " , ", "--arch", "x86_64"],
    ] {
        let out = publish(&moto, &dist, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    // arm64 asked for, only x86_64 in a given --dist: nothing is built behind the user's back.
    let out = publish(&moto, &dist, &["--regions", "us-east-1", "--arch", "all"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lambda-admission-arm64.zip is missing"));
    // A failed call: stdout holds nothing, not half an array.
    let mut cmd = Command::new(workspace().join("scripts/publish-layer.sh"));
    aws_env(&mut cmd, &moto);
    cmd.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", lambda_emulator::free_port()),
    )
    .env("AWS_MAX_ATTEMPTS", "1")
    .env("AWS_RETRY_MODE", "standard")
    .arg("--dist")
    .arg(&dist)
    .args(["--regions", "us-east-1", "--arch", "x86_64"]);
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("publishing x86_64 to us-east-1 failed"));
    let _ = std::fs::remove_dir_all(dist);
}
