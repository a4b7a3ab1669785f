//! Process concerns (issue 4): pidfile lock, daemonizing, systemd notify.
