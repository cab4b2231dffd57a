//! An interrupted encrypt or decrypt leaves nothing beside its destination.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, pattern};

/// Starts `datakey ARGS` reading stdin, feeds it `data` without closing stdin, waits for the
/// temporary output to appear, then sends `signal`. Returns the exit status.
fn interrupt(sb: &Sandbox, args: &[&str], data: &[u8], signal: &str) -> Option<i32> {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("datakey"))
        .args(args)
        .current_dir(sb.dir.path())
        .env("DATAKEY_KEYRING", sb.keyring())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(data).unwrap();

    // Wait (bounded) until the temporary output holds data.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let written = std::fs::read_dir(sb.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if written {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    drop(stdin);
    code
}

#[test]
fn interrupted_runs_leave_no_temporary_file() {
    let sb = Sandbox::new();
    let data = pattern(40 * 1024 * 1024, 9);
    sb.file("plain", &data);
    sb.cmd().args(["encrypt", "plain"]).assert().success();
    let sealed = std::fs::read(sb.path("plain.dk")).unwrap();
    let before = sb.listing();

    // Feed most of the input so that batches have been written, then interrupt.
    let code = interrupt(
        &sb,
        &["decrypt", "-o", "out", "-"],
        &sealed[..30 << 20],
        "INT",
    );
    assert_eq!(code, Some(130));
    assert_eq!(sb.listing(), before, "decrypt left a file");

    let code = interrupt(
        &sb,
        &["encrypt", "-o", "enc.dk", "-"],
        &data[..30 << 20],
        "TERM",
    );
    assert_eq!(code, Some(128 + 15));
    assert_eq!(sb.listing(), before, "encrypt left a file");
}
