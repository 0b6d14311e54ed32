//! The network Tessera's task containers run on, and its firewall.
//!
//! Docker's default bridge lets a container reach every address the host can: the cloud
//! metadata service at 169.254.169.254 (credentials of the machine's role), and every
//! service on the host itself. Tasks run instead on a bridge network of our own,
//! [`TASK_NETWORK`], whose Linux bridge has a fixed name ([`TASK_BRIDGE`]) so that two
//! host firewall rules can name it: packets from it to link-local addresses are dropped
//! where Docker forwards them (the `DOCKER-USER` chain), and packets from it to the host
//! are dropped on input. Containers on it cannot reach each other either (no
//! inter-container traffic). Other addresses, the internet and private networks, stay
//! reachable: tasks fetch data.
//!
//! The rules name an interface that need not exist yet, so they are put in place at
//! start (which needs root and `iptables` on the Docker host); the network itself is
//! created the first time the engine answers.

use std::process::Command;

use crate::DockerError;

/// The Docker network tasks run on unless configured otherwise.
pub const TASK_NETWORK: &str = "tessera";
/// The Linux bridge behind [`TASK_NETWORK`] (at most 15 characters).
pub const TASK_BRIDGE: &str = "tessera0";
/// Link-local addresses: the cloud metadata services live here.
const LINK_LOCAL: &str = "169.254.0.0/16";

/// The firewall rules for a task bridge: (chain, rule), in the order they are inserted
/// at the top of their chain (so a later one ends up above an earlier one).
pub fn rules(bridge: &str) -> Vec<(&'static str, Vec<String>)> {
    let words = |s: &[&str]| s.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let mut rules = vec![
        // Forwarded traffic: Docker sends it through DOCKER-USER before its own rules.
        (
            "DOCKER-USER",
            words(&["-i", bridge, "-d", LINK_LOCAL, "-j", "DROP"]),
        ),
        // Traffic to the host's own addresses is not forwarded; it arrives on input.
        ("INPUT", words(&["-i", bridge, "-j", "DROP"])),
    ];
    // Above the drop: DNS to a link-local resolver stays open (Google Cloud's resolver
    // is the metadata server's address, 169.254.169.254, port 53); its HTTP port is what
    // hands out credentials.
    for proto in ["udp", "tcp"] {
        rules.push((
            "DOCKER-USER",
            words(&[
                "-i", bridge, "-d", LINK_LOCAL, "-p", proto, "--dport", "53", "-j", "RETURN",
            ]),
        ));
    }
    rules
}

/// Put the rules for `bridge` in place unless they are there already. Needs root and
/// `iptables` (the one Docker itself uses) on this host.
pub fn guard(bridge: &str) -> Result<(), DockerError> {
    for (chain, rule) in rules(bridge) {
        let present = iptables(&["-C", chain], &rule)?;
        if !present.status.success() {
            let added = iptables(&["-I", chain], &rule)?;
            if !added.status.success() {
                return Err(DockerError::Other(format!(
                    "iptables -I {chain} {} failed: {}",
                    rule.join(" "),
                    String::from_utf8_lossy(&added.stderr).trim()
                )));
            }
            tracing::info!(chain, rule = %rule.join(" "), "added a firewall rule for the task network");
        }
    }
    Ok(())
}

fn iptables(action: &[&str], rule: &[String]) -> Result<std::process::Output, DockerError> {
    // -w: wait for the lock other iptables users (Docker) hold.
    Command::new("iptables")
        .arg("-w")
        .args(action)
        .args(rule)
        .output()
        .map_err(|e| DockerError::Other(format!("running iptables: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_drop_link_local_and_the_host_from_the_bridge_only() {
        let rules: Vec<String> = rules("tessera0")
            .into_iter()
            .map(|(chain, rule)| format!("{chain} {}", rule.join(" ")))
            .collect();
        assert_eq!(
            rules,
            [
                "DOCKER-USER -i tessera0 -d 169.254.0.0/16 -j DROP",
                "INPUT -i tessera0 -j DROP",
                // Inserted after the drop, so above it: DNS only.
                "DOCKER-USER -i tessera0 -d 169.254.0.0/16 -p udp --dport 53 -j RETURN",
                "DOCKER-USER -i tessera0 -d 169.254.0.0/16 -p tcp --dport 53 -j RETURN",
            ]
        );
    }
}
