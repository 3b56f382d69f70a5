//! Linux network namespaces with veth links, for the network-split test:
//! each service runs in a namespace of its own, and only the links the
//! design calls for exist. Made with iproute2 (`ip netns`, `ip link`), which
//! needs root; [`Lab::create`] answers `None` where namespaces cannot be
//! created, so the caller can skip with a clear message. Everything is
//! deleted on drop.

use std::process::{Command, Output};

use anyhow::{Context, bail};

/// A set of namespaces and the veth links between them.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    /// Namespaces named `<prefix><name>` for each of `names`, each with its
    /// loopback up. `Ok(None)` with the reason printed if this machine does
    /// not allow creating network namespaces.
    pub fn create(prefix: &str, names: &[&str]) -> anyhow::Result<Option<Self>> {
        let probe = format!("{prefix}probe");
        match ip(&["netns", "add", &probe]) {
            Ok(_) => {
                ip(&["netns", "del", &probe])?;
            }
            Err(e) => {
                eprintln!("SKIP: cannot create network namespaces here ({e:#})");
                return Ok(None);
            }
        }
        let mut lab = Lab {
            prefix: prefix.to_owned(),
            namespaces: Vec::new(),
        };
        for name in names {
            let ns = lab.ns(name);
            ip(&["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(Some(lab))
    }

    /// The full namespace name of `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A veth pair between `a` and `b`, with `a_ip` and `b_ip` (CIDR, e.g.
    /// `10.201.1.1/30`) on the two ends.
    pub fn link(&self, a: &str, a_ip: &str, b: &str, b_ip: &str) -> anyhow::Result<()> {
        let (ns_a, ns_b) = (self.ns(a), self.ns(b));
        let (dev_a, dev_b) = (
            format!("v{}{a}{b}", self.prefix),
            format!("v{}{b}{a}", self.prefix),
        );
        if dev_a.len() > 15 || dev_b.len() > 15 {
            bail!("interface name {dev_a} is too long");
        }
        ip(&[
            "link", "add", &dev_a, "netns", &ns_a, "type", "veth", "peer", "name", &dev_b, "netns",
            &ns_b,
        ])?;
        for (ns, dev, addr) in [(&ns_a, &dev_a, a_ip), (&ns_b, &dev_b, b_ip)] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// A command that runs `program` inside namespace `name`.
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(name)]).arg(program);
        cmd
    }

    /// The routes of namespace `name`, as `ip route` prints them.
    pub fn routes(&self, name: &str) -> anyhow::Result<String> {
        let out = ip(&["-n", &self.ns(name), "route"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and so their peers.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
