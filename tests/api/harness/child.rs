//! The built `docroom` binary as a child process, for the stories that need real signals, a kill
//! or the exit status. The port is chosen here, never read from the child's log: a free port is
//! picked and released, the child is told to listen on it, and the harness waits until the
//! child itself (found through `/proc`) holds a listening socket on it. Another process can take
//! the port in between; then the child fails to bind and exits, and it is started again on
//! another port.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::logs::Sink;

/// Tries on as many ports before giving up.
const ATTEMPTS: usize = 3;

/// How to start the binary: its environment, arguments before `serve`, working directory.
pub struct ChildSpec<'a> {
    pub vars: &'a [(String, String)],
    pub args: &'a [String],
    pub working_dir: &'a Path,
}

/// Starts the binary and returns it once it listens on its port.
pub async fn launch(spec: &ChildSpec<'_>, sink: &Sink, label: &str) -> (Child, SocketAddr) {
    let mut last_exit = None;
    for attempt in 1..=ATTEMPTS {
        let addr = free_port();
        let mut child = spawn(spec, addr, sink, &format!("{label}.{attempt}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the service") {
                last_exit = Some(status);
                break;
            }
            if listens_on(child.id(), addr) {
                return (child, addr);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docroom did not listen on {addr} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!(
        "docroom exited before listening, {ATTEMPTS} times (last: {last_exit:?})\n{}",
        sink.lock().unwrap().join("\n")
    );
}

/// Runs `docroom serve` with only `vars` of the DOCROOM variables until it exits, for a start that
/// must fail; panics (killing it) if it still runs after `within`. Answers its exit status and
/// output.
pub fn run_to_exit(vars: &[(&str, &str)], within: Duration) -> Output {
    let mut cmd = docroom_serve(&[], &std::env::temp_dir());
    cmd.envs(vars.iter().copied());
    let mut child = cmd.spawn().expect("spawn the docroom binary");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait for docroom").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("read docroom's output");
            panic!(
                "docroom still ran after {within:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("read docroom's output")
}

/// `docroom ARGS serve` in `dir`, its output piped, with none of the developer's DOCROOM
/// variables: only the test's settings reach it.
fn docroom_serve(args: &[String], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docroom"));
    cmd.args(args)
        .arg("serve")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DOCROOM") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A port nothing listens on right now.
fn free_port() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    probe.local_addr().expect("the probe's address")
}

fn spawn(spec: &ChildSpec<'_>, addr: SocketAddr, sink: &Sink, label: &str) -> Child {
    let mut cmd = docroom_serve(spec.args, spec.working_dir);
    cmd.env("RUST_BACKTRACE", "1");
    for (key, value) in spec.vars {
        cmd.env(key, value);
    }
    cmd.env("DOCROOM_LISTEN", addr.to_string());
    let mut child = cmd.spawn().expect("spawn the docroom binary");
    forward(child.stderr.take().unwrap(), label, sink);
    forward(child.stdout.take().unwrap(), label, sink);
    child
}

/// Whether process `pid` holds a socket listening on `addr` (IPv4): the socket's inode from
/// `/proc/net/tcp`, matched against the process's open files.
fn listens_on(pid: u32, addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    // /proc/net/tcp prints the address as the in-memory u32 in hex, then `:PORT` in hex.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    const LISTEN: &str = "0A";
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() > 9 && cols[1] == local && cols[3] == LISTEN)
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// Copies the child's output to the test's stderr (captured by libtest, shown on failure) and to
/// `sink`.
fn forward(stream: impl Read + Send + 'static, label: &str, sink: &Arc<Mutex<Vec<String>>>) {
    let (label, sink) = (label.to_owned(), sink.clone());
    let capture = std::thread::Builder::new().name(format!("{label} output"));
    capture
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
                let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
                raw.clear();
                eprintln!("[{label}] {line}");
                sink.lock().unwrap().push(line);
            }
        })
        .expect("spawn the output thread");
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_listener_of_this_process_is_found_and_a_free_port_is_not() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    assert!(listens_on(std::process::id(), addr));

    drop(listener);
    assert!(!listens_on(std::process::id(), addr));
}

#[test]
fn ansi_colours_are_stripped() {
    let coloured = "\u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m1";
    assert_eq!(strip_ansi(coloured), " INFO listening addr=1");
}
