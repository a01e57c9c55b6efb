//! What a worker can be reached through: its one inherited socket, connected to its parent,
//! and nothing else. Neither a worker nor the program with a pool opens a network socket or
//! listens anywhere; checked from `/proc` inside a running worker and in this process.

use std::collections::BTreeMap;

use concurrent_futures::{ProcessPoolExecutor, task};

concurrent_futures::enable_test_support!();

/// The sockets among this process's descriptors: inode to where `/proc/net` lists it
/// (`"unix connected"`, `"unix listening"`, `"unix <state>"`, `"tcp"`, ...).
fn sockets_of_this_process() -> BTreeMap<u64, String> {
    let mut sockets = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let inode: u64 = inode.parse().unwrap();
            sockets.insert(inode, where_listed(inode));
        }
    }
    sockets
}

/// Where the kernel's socket tables list `inode`.
fn where_listed(inode: u64) -> String {
    for table in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{table}")) else {
            continue;
        };
        // `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
        // timeout inode ...`: the inode is the tenth column.
        if text
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(9) == Some(&inode.to_string()))
        {
            return table.to_owned();
        }
    }
    let unix = std::fs::read_to_string("/proc/self/net/unix").unwrap();
    // `Num RefCount Protocol Flags Type St Inode [Path]`; flag 0x10000 is __SO_ACCEPTCON (a
    // listening socket), state 03 is SS_CONNECTED.
    for line in unix.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(6) == Some(&inode.to_string().as_str()) {
            let flags = u32::from_str_radix(columns[3], 16).unwrap();
            return match (flags & 0x10000 != 0, columns[5]) {
                (true, _) => "unix listening".to_owned(),
                (false, "03") => "unix connected".to_owned(),
                (false, state) => format!("unix {state}"),
            };
        }
    }
    "unlisted".to_owned()
}

/// Runs in a worker: what it holds, seen from inside.
#[task]
fn worker_sockets() -> Vec<(u64, String)> {
    sockets_of_this_process().into_iter().collect()
}

#[test]
fn a_worker_holds_one_connected_unix_socket_and_nothing_listens() {
    let executor = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let futures: Vec<_> = (0..4).map(|_| executor.submit(worker_sockets())).collect();
    for future in futures {
        let sockets = future.result().unwrap();
        assert_eq!(sockets.len(), 1, "one socket per worker: {sockets:?}");
        assert_eq!(sockets[0].1, "unix connected", "{sockets:?}");
    }
    // The parent's side: its ends of the workers' socket pairs, connected, none listening.
    let ours = sockets_of_this_process();
    assert!(!ours.is_empty());
    assert!(
        ours.values().all(|place| place == "unix connected"),
        "{ours:?}"
    );
}
