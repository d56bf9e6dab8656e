//! `qchar`: a KVM guest with QEMU-compatible serial ports, chardevs and
//! monitors, taking `qemu-system-x86_64`'s command line. The console of a
//! running guest can be moved to another backend (QMP `chardev-change`)
//! without the guest noticing.
//!
//! Modules: [`cli`] (argv to a typed configuration), [`setup`] (the
//! configuration to chardevs, machine and monitors, and the orderly exit),
//! [`vmctl`] (the guest as the monitors see it), [`fds`] (`-add-fd`), [`web`] (the web
//! console), [`process`]
//! (`-daemonize`, `-pidfile`, signals), [`report`] (QEMU-style messages).
//! QEMU's option syntax itself is `qchar_chardev::qemuopts`.

mod cli;
mod fds;
mod process;
mod report;
mod setup;
mod vmctl;
mod web;

use std::io::Write;

use cli::{Action, Config, Diag, PrintAndExit};

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate() {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                if i == 0 {
                    args.push("qchar".into());
                    continue;
                }
                report::error(&format!("{}: argument is not UTF-8", a.to_string_lossy()));
                return 1;
            }
        }
    }
    report::set_prog(args.first().map(String::as_str).unwrap_or("qchar"));
    report::init_logging();
    match cli::parse(args.get(1..).unwrap_or_default()) {
        Err(d) => {
            report::print(&d);
            1
        }
        Ok(Action::Print(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Ok(Action::PrintAfterWarnings {
            warnings,
            text,
            status,
        }) => {
            for w in &warnings {
                report::print(w);
            }
            let _ = std::io::stdout().write_all(text.as_bytes());
            status
        }
        Ok(Action::WriteImage { name, path }) => write_image(&name, &path),
        Ok(Action::Run(cfg)) => run_config(&cfg),
    }
}

/// `--write-builtin-image NAME PATH`.
fn write_image(name: &str, path: &str) -> i32 {
    let Some(image) = qchar_machine::guest::builtin_image(name) else {
        report::error(&format!(
            "unknown built-in image '{name}' (built-ins: demo, demo:N, irq-demo)"
        ));
        return 1;
    };
    match qchar_machine::guest::write_image(std::path::Path::new(path), &image) {
        Ok(()) => 0,
        Err(e) => {
            report::error(&format!(
                "Could not create '{path}': {}",
                qchar_chardev::error::os_message(&e)
            ));
            1
        }
    }
}

fn print_error(e: &anyhow::Error) {
    match e.downcast_ref::<Diag>() {
        Some(d) => report::print(d),
        None => report::error(&format!("{e:#}")),
    }
}

fn run_config(cfg: &Config) -> i32 {
    for w in &cfg.warnings {
        report::print(w);
    }
    if let Some(name) = &cfg.process_name {
        process::set_process_name(name);
    }
    // Before anything else opens a descriptor, as QEMU does.
    let set_members = match fds::take(&cfg.add_fds) {
        Ok(m) => m,
        Err(d) => {
            report::print(&d);
            return 1;
        }
    };
    let daemon = if cfg.daemonize {
        match process::daemonize() {
            Ok(d) => Some(d),
            Err(e) => {
                report::error(&format!("cannot daemonize: {e}"));
                return 1;
            }
        }
    } else {
        None
    };
    if let Some(path) = &cfg.pidfile {
        if let Err(e) = process::write_pidfile(path) {
            report::error(&format!("cannot create PID file: {e}"));
            return 1;
        }
    }
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal thread takes these signals.
    process::block_term_signals();
    let exit = vmctl::ExitSignal::new();
    if let Err(e) = process::watch_signals(exit.clone()) {
        report::error(&format!("cannot start the signal thread: {e}"));
        return 1;
    }
    let running = match setup::setup(cfg, exit, set_members) {
        Ok(r) => r,
        Err(e) => {
            process::remove_pidfile();
            if let Some(p) = e.downcast_ref::<PrintAndExit>() {
                let _ = std::io::stdout().write_all(p.text.as_bytes());
                return p.status;
            }
            print_error(&e);
            return 1;
        }
    };
    if let Some(d) = daemon {
        if let Err(e) = d.ready() {
            report::error(&format!("cannot daemonize: {e}"));
            return 1;
        }
    }
    let cause = running.exit.wait();
    setup::teardown(running, cause)
}
