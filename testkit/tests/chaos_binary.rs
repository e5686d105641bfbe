//! The `chaos-proxy` binary: first stdout line, control line, schedules, errors.

mod chaos_common;

use std::net::SocketAddr;
use std::process::{Output, Stdio};

use chaos_common::*;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_chaos-proxy");

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn spawn(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = command(args).spawn().expect("spawn chaos-proxy");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    timeout(EVENTUALLY, lines.next_line())
        .await
        .expect("a line in time")
        .expect("read stdout")
        .expect("a line before EOF")
}

fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} should start with {prefix:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

async fn run_to_end(args: &[&str]) -> Output {
    timeout(EVENTUALLY, command(args).output())
        .await
        .expect("exits in time")
        .expect("run chaos-proxy")
}

/// Asserts a failed run: non-zero exit, nothing on stdout, exactly one stderr line.
fn assert_one_line_failure(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail; stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.starts_with("chaos-proxy: error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn prints_listening_first_then_control_and_proxies() {
    let echo = echo_server().await;
    let upstream = echo.addr.to_string();
    let (mut child, mut lines) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--control",
        "127.0.0.1:0",
    ])
    .await;
    let listen = addr_after(&next_line(&mut lines).await, "listening on ");
    assert_ne!(listen.port(), 0, "the real port is printed");
    let control = addr_after(&next_line(&mut lines).await, "control on ");
    assert_ne!(control.port(), 0);

    let mut c = TcpStream::connect(listen).await.unwrap();
    assert_eq!(
        round_trip(&mut c, b"through the binary").await.unwrap(),
        b"through the binary"
    );
    // The proxy counts a chunk right after writing it, possibly on another
    // thread than the one forwarding the echo: poll.
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        let (status, counters) = http(control, "GET", "/counters", "").await;
        assert_eq!(status, 200);
        if counters["bytes_up"] == 18 && counters["bytes_down"] == 18 {
            assert_eq!(counters["accepted"], 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counters}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // SIGTERM: a clean exit.
    #[cfg(unix)]
    {
        let pid = child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let status = timeout(EVENTUALLY, child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status}");
    }
    #[cfg(not(unix))]
    child.kill().await.unwrap();
}

#[tokio::test]
async fn plays_a_schedule_file() {
    let echo = echo_server().await;
    let upstream = echo.addr.to_string();
    let file = std::env::temp_dir().join(format!("chaos-bin-{}-ok.toml", std::process::id()));
    std::fs::write(
        &file,
        "[[phase]]\nfrom = \"0s\"\nto = \"1h\"\nmode = \"refuse\"\n",
    )
    .unwrap();
    let (mut child, mut lines) = spawn(&[
        "--listen=127.0.0.1:0",
        "--upstream",
        &upstream,
        "--schedule",
        file.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
    ])
    .await;
    let listen = addr_after(&next_line(&mut lines).await, "listening on ");
    let control = addr_after(&next_line(&mut lines).await, "control on ");
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while http(control, "GET", "/toxics", "").await.1["mode"] != "refuse" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, schedule) = http(control, "GET", "/schedule", "").await;
    assert_eq!(schedule["running"], true);
    assert_eq!(
        connect_and_read_outcome(listen).await,
        Some(std::io::ErrorKind::ConnectionReset)
    );
    child.kill().await.unwrap();
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn bad_arguments_fail_with_one_line() {
    let out = run_to_end(&[]).await;
    assert_one_line_failure(&out, "missing --listen");
    assert_eq!(out.status.code(), Some(2));

    let out = run_to_end(&["--listen", "localhost", "--upstream", "127.0.0.1:1"]).await;
    assert_one_line_failure(&out, "--listen: invalid address \"localhost\"");

    let out = run_to_end(&["--listen", "127.0.0.1:0"]).await;
    assert_one_line_failure(&out, "missing --upstream");

    let out = run_to_end(&["--verbose"]).await;
    assert_one_line_failure(&out, "unknown argument \"--verbose\"");

    let out = run_to_end(&["--listen", "127.0.0.1:0", "--upstream"]).await;
    assert_one_line_failure(&out, "--upstream needs a value");

    let out = run_to_end(&["--listen", "127.0.0.1:0", "--upstream", "no-port"]).await;
    assert_one_line_failure(&out, "upstream \"no-port\" is not HOST:PORT");
    assert_eq!(out.status.code(), Some(2));

    let out = run_to_end(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--toxics",
        "{\"mode\":\"maybe\"}",
    ])
    .await;
    assert_one_line_failure(&out, "--toxics");

    let out = run_to_end(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--control",
        "0.0.0.0:0",
    ])
    .await;
    assert_one_line_failure(&out, "not a loopback address");
}

#[tokio::test]
async fn taken_port_fails_with_one_line() {
    let taken = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_to_end(&["--listen", &addr, "--upstream", "127.0.0.1:1"]).await;
    assert_one_line_failure(&out, &format!("cannot listen on {addr}"));
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn bad_schedule_file_fails_with_one_line() {
    let dir = std::env::temp_dir();
    let bad = dir.join(format!("chaos-bin-{}-bad.toml", std::process::id()));
    std::fs::write(
        &bad,
        "[[phase]]\nfrom = \"0s\"\nto = \"5s\"\n[[phase]]\nfrom = \"4s\"\nto = \"6s\"\nmode = \"blackhole\"\n",
    )
    .unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--schedule",
    ];
    let out = run_to_end(&[&args[..], &[bad.to_str().unwrap()]].concat()).await;
    assert_one_line_failure(
        &out,
        "phase[1].from = \"4s\": overlaps phase[0], which ends at 5s",
    );

    std::fs::write(&bad, "[[phase]\nfrom = 1\n").unwrap();
    let out = run_to_end(&[&args[..], &[bad.to_str().unwrap()]].concat()).await;
    assert_one_line_failure(&out, "invalid TOML at line 1");
    std::fs::remove_file(&bad).unwrap();

    let missing = dir.join(format!("chaos-bin-{}-missing.toml", std::process::id()));
    let out = run_to_end(&[&args[..], &[missing.to_str().unwrap()]].concat()).await;
    assert_one_line_failure(&out, "cannot read schedule");
}

#[tokio::test]
async fn help_prints_usage_and_succeeds() {
    let out = run_to_end(&["--help"]).await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--listen"), "{text}");
    assert!(text.contains("--upstream HOST:PORT"), "{text}");
}
