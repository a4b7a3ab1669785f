//! What `/proc` says about processes, for tests of spawned pools: is a pid alive, which
//! processes belong to a process group.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// `(pid, state, ppid, pgrp)` of every process, from `/proc/<pid>/stat`.
fn processes() -> Vec<(u32, char, u32, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: fields follow the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('?');
        let number = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
        out.push((pid, state, number(1), number(2)));
    }
    out
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    processes()
        .iter()
        .any(|&(p, state, _, _)| p == pid && state != 'Z')
}

/// Live (non-zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|&(_, state, _, pgrp)| pgrp == pgid && state != 'Z')
        .map(|(pid, _, _, _)| pid)
        .collect()
}

/// Live children of `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|&(_, state, ppid, _)| ppid == parent && state != 'Z')
        .map(|(pid, _, _, _)| pid)
        .collect()
}

/// Waits until `check` holds; false after `timeout`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
