//! `erpsync stack up` as a person runs it (README "Try it by hand"): started as a child
//! process it prints its block; with the environment it prints, `erpsync send order` reaches
//! the ERP and `erpsync status` shows the order and the schedules' runs; on SIGINT it exits 0
//! and leaves none of its processes (moto, trytond, cargo lambda watch, the functions) running.
//! Needs the stack's venv and seeded Tryton (`make setup`) and the functions built (`make test`
//! builds the workspace first).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const ERPSYNC: &str = env!("CARGO_BIN_EXE_erpsync");

/// The variables of the `export NAME='value'` lines (single quotes as up.rs writes them).
fn exports(block: &str) -> BTreeMap<String, String> {
    block
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let value = match value.split_once(":\"$PATH\"") {
                Some((path, _)) => path,
                None => value,
            };
            let value = value
                .strip_prefix('\'')?
                .strip_suffix('\'')?
                .replace(r"'\''", "'");
            Some((name.to_owned(), value))
        })
        .collect()
}

/// Every process below `root` now (from /proc's parent links).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            found.push(*child);
            queue.push(*child);
        }
    }
    found
}

/// Alive and not a zombie waiting for its parent.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

async fn erpsync(environment: &BTreeMap<String, String>, args: &[&str]) -> (i32, String) {
    let output = Command::new(ERPSYNC)
        .args(args)
        .envs(environment)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running erpsync {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_up_serves_a_signed_order_until_interrupted_and_leaves_nothing_running() {
    let mut up = Command::new(ERPSYNC)
        .args(["stack", "up"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting erpsync stack up: {e}"));
    let pid = up.id().unwrap_or_else(|| panic!("stack up has no pid"));
    let stdout = up
        .stdout
        .take()
        .unwrap_or_else(|| panic!("stack up's output is not piped"));
    let mut lines = BufReader::new(stdout).lines();
    let mut block = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(300), async {
        while let Ok(Some(line)) = lines.next_line().await {
            block.push_str(&line);
            block.push('\n');
            if line.starts_with("erpsync stack up: ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "stack up did not print its block:\n{block}"
    );
    // Keep reading, so that stack up never blocks on a full pipe.
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    for part in [
        "/lambda-url/shop-webhook/",
        "/lambda-url/courier-webhook/",
        "uk-shop",
        "Tryton (the ERP)",
        "Sandbox stores",
        "OrdersQueue",
        "ReconcileFunction.Schedule",
    ] {
        assert!(block.contains(part), "the block lacks {part:?}:\n{block}");
    }
    let mut environment = exports(&block);
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "ERPSYNC_STAGE",
        "ERPSYNC_CONFIG",
        "ERPSYNC_SHOP_WEBHOOK_URL",
        "ERPSYNC_WEBHOOK_SECRET_UK_SHOP",
        "ERP_URL",
        "ERPSYNC_TRYTON_KEY",
    ] {
        assert!(environment.contains_key(name), "no export of {name}");
    }
    // The caller's own PATH after the stack's, as `source` gives it.
    let path = std::env::var("PATH").unwrap_or_default();
    environment.insert("PATH".to_owned(), format!("{}:{path}", environment["PATH"]));
    let run_dir = block
        .lines()
        .find_map(|line| line.strip_prefix("Logs: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no Logs: line in\n{block}"));

    let order = "4242424242424";
    let (code, sent) = erpsync(
        &environment,
        &["send", "order", "--channel", "uk-shop", "--id", order],
    )
    .await;
    assert_eq!(code, 0, "{sent}");
    assert!(sent.contains("-> HTTP 200"), "{sent}");

    // The event source mapping hands it to order-sync; the first schedules have run.
    let started = Instant::now();
    let status = loop {
        let (code, text) = erpsync(&environment, &["status", "--json"]).await;
        let status: Value = serde_json::from_str(&text).unwrap_or_default();
        let synced = ["synced", "backordered"]
            .iter()
            .filter_map(|state| status["counts"]["order-sync"][state].as_u64())
            .sum::<u64>();
        let reconciled = status["last_runs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|run| run["schedule"] == "reconcile/uk-shop");
        if code == 0 && synced == 1 && reconciled {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the order or the schedules did not land within 3 minutes (exit {code}):\n{text}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(status["needs_attention"], 0, "{status}");
    let sales: Value = reqwest::Client::new()
        .get(format!(
            "{}/erpsync/rest/model/sale.sale",
            environment["ERP_URL"]
        ))
        .bearer_auth(&environment["ERPSYNC_TRYTON_KEY"])
        .query(&[("f", "reference"), ("f", "state")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("asking Tryton: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("Tryton's answer: {e}"));
    let reference = format!("uk-shop/{order}");
    let booked: Vec<&Value> = sales
        .as_array()
        .into_iter()
        .flatten()
        .filter(|sale| sale["reference"] == reference.as_str())
        .collect();
    assert_eq!(booked.len(), 1, "one sale for {reference}: {sales}");
    assert_eq!(booked[0]["state"], "processing", "{sales}");
    let (code, parked) = erpsync(&environment, &["dlq", "list"]).await;
    assert_eq!((code, parked.trim()), (0, "no parked messages"));

    // Everything it started, functions included, is gone after an interrupt.
    let processes = descendants(pid);
    assert!(
        processes.len() >= 5,
        "moto, trytond, the watches and the functions: {processes:?}"
    );
    let interrupted = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await
        .unwrap_or_else(|e| panic!("kill -INT: {e}"));
    assert!(interrupted.success());
    let exited = tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .unwrap_or_else(|_| panic!("stack up did not stop within 60 s of SIGINT"))
        .unwrap_or_else(|e| panic!("waiting for stack up: {e}"));
    let rest = rest.await.unwrap_or_default();
    assert!(exited.success(), "stack up exited {exited}:\n{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    // Reaped processes vanish at once; allow a moment for the last ones to be reparented.
    let started = Instant::now();
    let left = loop {
        let left: Vec<u32> = processes.iter().copied().filter(|p| running(*p)).collect();
        if left.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(left.is_empty(), "still running after stack up: {left:?}");
    assert!(
        !erpsync_tools::stack::stack_dir().join("up.env").exists()
            || std::fs::read_to_string(erpsync_tools::stack::stack_dir().join("up.env"))
                .is_ok_and(|text| !text.contains(&*run_dir.to_string_lossy())),
        "stack up left its env file behind"
    );
    let _ = std::fs::remove_dir_all(&run_dir);
}
