//! The pod's /etc/resolv.conf and /etc/hosts, as upstream's kubelet writes them.
//!
//! Does: dnsPolicy ClusterFirst / ClusterFirstWithHostNet / Default / None plus dnsConfig,
//! clusterDNS / clusterDomain (search `<ns>.svc.<domain> svc.<domain> <domain>` then the
//! host's, `options ndots:5`), the managed hosts file with the pod IP and hostAliases.
//! ClusterFirst without clusterDNS falls back to Default, as upstream (the caller warns).
//! Pure: the host's resolv.conf and hosts file come in as text.

use crate::api::types::Pod;
use std::path::PathBuf;

/// The node's DNS settings (KubeletConfiguration clusterDNS, clusterDomain, resolvConf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsSettings {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The host resolv.conf Default pods inherit; None (`--resolv-conf=""`): none.
    pub resolv_conf: Option<PathBuf>,
}

/// Which resolver setup a pod gets, after upstream's getPodDNSType.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DnsType {
    Cluster,
    Host,
    None,
}

/// Upstream's mapping: ClusterFirst (the default) on a hostNetwork pod means Default.
pub fn dns_type(pod: &Pod) -> DnsType {
    match pod.spec.dns_policy.as_str() {
        "None" => DnsType::None,
        "ClusterFirstWithHostNet" => DnsType::Cluster,
        "Default" => DnsType::Host,
        _ if pod.spec.host_network => DnsType::Host,
        _ => DnsType::Cluster,
    }
}

/// Upstream's MissingClusterDNS message, for the event and the log.
pub fn missing_cluster_dns_message(policy: &str) -> String {
    let policy = if policy.is_empty() { "ClusterFirst" } else { policy };
    format!("kubelet does not have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. Falling back to \"Default\" policy.")
}

/// The Kubernetes-managed hosts file for a pod with its own network namespace.
/// `ip` "" (no CNI yet) maps the hostname to 127.0.1.1, which `lo` answers in the
/// pod's namespace (the Debian convention for a host without a fixed address).
/// With a subdomain and a cluster domain the FQDN comes first, as upstream.
pub fn hosts_file(pod: &Pod, hostname: &str, ip: &str, cluster_domain: &str) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file.\n");
    s.push_str("127.0.0.1\tlocalhost\n");
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    s.push_str("fe00::0\tip6-localnet\n");
    s.push_str("fe00::0\tip6-mcastprefix\n");
    s.push_str("fe00::1\tip6-allnodes\n");
    s.push_str("fe00::2\tip6-allrouters\n");
    let ip = if ip.is_empty() { "127.0.1.1" } else { ip };
    if !pod.spec.subdomain.is_empty() && !cluster_domain.is_empty() {
        let ns = if pod.metadata.namespace.is_empty() { "default" } else { &pod.metadata.namespace };
        s.push_str(&format!("{ip}\t{hostname}.{}.{ns}.svc.{cluster_domain}\t{hostname}\n", pod.spec.subdomain));
    } else {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s.push_str(&host_aliases(pod));
    s
}

/// hostNetwork pods see the node's hosts file, plus their hostAliases.
pub fn host_network_hosts(node_hosts: &str, pod: &Pod) -> String {
    let mut s = node_hosts.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&host_aliases(pod));
    s
}

fn host_aliases(pod: &Pod) -> String {
    if pod.spec.host_aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in &pod.spec.host_aliases {
        s.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
    s
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// nameservers, searches, options of a resolv.conf text (last `search` line wins).
fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.next().map(str::to_string)),
            Some("search") => {
                search = f.filter(|s| *s != ".").map(|s| s.trim_end_matches('.').to_string()).collect()
            }
            Some("options") => opts.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    (ns, search, opts)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// The pod's resolv.conf and whether ClusterFirst had to fall back to Default because no
/// clusterDNS is configured. `host_resolv` is the text of the node's resolv.conf.
/// dnsConfig nameservers/searches/options are merged last: duplicates dropped, at most 3
/// nameservers and 32 searches; an option given again replaces the earlier value.
pub fn resolv_conf(pod: &Pod, host_resolv: &str, dns: &DnsSettings) -> (String, bool) {
    let (host_ns, host_search, host_opts) = parse_resolv(host_resolv);
    let mut fell_back = false;
    let (ns, mut search, mut opts) = match dns_type(pod) {
        DnsType::None => (Vec::new(), Vec::new(), Vec::new()),
        DnsType::Cluster if !dns.cluster_dns.is_empty() => {
            (dns.cluster_dns.clone(), cluster_searches(pod, &dns.cluster_domain, host_search), vec!["ndots:5".to_string()])
        }
        DnsType::Cluster => {
            fell_back = true;
            (host_ns, host_search, host_opts)
        }
        DnsType::Host => (host_ns, host_search, host_opts),
    };
    let mut ns = dedup(ns);
    if let Some(cfg) = &pod.spec.dns_config {
        push_unique(&mut ns, cfg.nameservers.iter().cloned());
        push_unique(&mut search, cfg.searches.iter().cloned());
        for o in &cfg.options {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            };
            let name_of = |s: &str| s.split(':').next().unwrap_or("").to_string();
            match opts.iter_mut().find(|x| name_of(x) == o.name) {
                Some(slot) => *slot = text,
                None => opts.push(text),
            }
        }
    }
    let opts = dedup(opts);
    let mut search = dedup(search);
    ns.truncate(MAX_NAMESERVERS);
    search.truncate(MAX_SEARCHES);
    let mut s = String::new();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in &ns {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !opts.is_empty() {
        s.push_str(&format!("options {}\n", opts.join(" ")));
    }
    (s, fell_back)
}

/// `<ns>.svc.<domain> svc.<domain> <domain>` then the host's searches (upstream's
/// generateSearchesForDNSClusterFirst); only the host's without a cluster domain.
fn cluster_searches(pod: &Pod, domain: &str, host: Vec<String>) -> Vec<String> {
    if domain.is_empty() {
        return host;
    }
    let ns = if pod.metadata.namespace.is_empty() { "default" } else { &pod.metadata.namespace };
    let mut s = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
    push_unique(&mut s, host);
    s
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    push_unique(&mut out, list);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{HostAlias, PodDnsConfig, PodDnsConfigOption};

    use crate::network::tests::pod;

    #[test]
    fn hosts_content() {
        let mut p = pod();
        let h = hosts_file(&p, "web", "", "");
        assert_eq!(
            h,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             127.0.1.1\tweb\n"
        );
        p.spec.subdomain = "sub".into();
        p.spec.host_aliases = vec![
            HostAlias { ip: "10.0.0.9".into(), hostnames: vec!["a".into(), "b".into()] },
            HostAlias { ip: "::2".into(), hostnames: vec!["c".into()] },
        ];
        let h = hosts_file(&p, "web", "10.1.0.4", "cluster.local");
        assert!(h.contains("\n10.1.0.4\tweb.sub.prod.svc.cluster.local\tweb\n"), "{h}");
        assert!(h.ends_with("\n\n# Entries added by HostAliases.\n10.0.0.9\ta\tb\n::2\tc\n"), "{h}");
        // no cluster domain configured: no FQDN
        assert!(hosts_file(&p, "web", "10.1.0.4", "").contains("\n10.1.0.4\tweb\n"));
        let hn = host_network_hosts("127.0.0.1 localhost\n10.0.0.2 node", &p);
        assert!(hn.starts_with("127.0.0.1 localhost\n10.0.0.2 node\n\n# Entries added by HostAliases.\n"), "{hn}");
    }

    const HOST: &str = "# generated\nnameserver 10.0.0.1\nnameserver 10.0.0.1\nnameserver 1.1.1.1 \
                        \ndomain lan\nsearch old.example\nsearch lan example.com. lan\noptions ndots:2 edns0\n";

    fn cluster() -> DnsSettings {
        DnsSettings { cluster_dns: vec!["10.96.0.10".into()], cluster_domain: "cluster.local".into(), resolv_conf: None }
    }

    #[test]
    fn resolv_without_cluster_dns_falls_back_to_host() {
        let mut p = pod();
        let want = "search lan example.com\nnameserver 10.0.0.1\nnameserver 1.1.1.1\noptions ndots:2 edns0\n";
        for (policy, fell_back) in [("", true), ("ClusterFirst", true), ("Default", false), ("ClusterFirstWithHostNet", true)] {
            p.spec.dns_policy = policy.into();
            assert_eq!(resolv_conf(&p, HOST, &DnsSettings::default()), (want.to_string(), fell_back), "policy {policy:?}");
        }
        // hostNetwork + ClusterFirst is Default: no fallback to warn about
        p.spec.host_network = true;
        p.spec.dns_policy = "ClusterFirst".into();
        assert!(!resolv_conf(&p, HOST, &DnsSettings::default()).1);
        assert_eq!(missing_cluster_dns_message(""), "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.");
    }

    #[test]
    fn resolv_cluster_first() {
        let mut p = pod();
        let want = "search prod.svc.cluster.local svc.cluster.local cluster.local lan example.com\nnameserver 10.96.0.10\noptions ndots:5\n";
        for policy in ["", "ClusterFirst", "ClusterFirstWithHostNet"] {
            p.spec.dns_policy = policy.into();
            assert_eq!(resolv_conf(&p, HOST, &cluster()), (want.to_string(), false), "policy {policy:?}");
        }
        // hostNetwork: ClusterFirst means the host's, ClusterFirstWithHostNet the cluster's
        p.spec.host_network = true;
        p.spec.dns_policy = "ClusterFirst".into();
        assert!(resolv_conf(&p, HOST, &cluster()).0.contains("nameserver 10.0.0.1\n"));
        p.spec.dns_policy = "ClusterFirstWithHostNet".into();
        assert_eq!(resolv_conf(&p, HOST, &cluster()).0, want);
        p.spec.dns_policy = "Default".into();
        assert!(resolv_conf(&p, HOST, &cluster()).0.starts_with("search lan example.com\nnameserver 10.0.0.1\n"));
        // no cluster domain: the host's searches only; no namespace: "default"
        let mut d = cluster();
        d.cluster_domain.clear();
        p.spec.dns_policy = "ClusterFirstWithHostNet".into();
        assert_eq!(resolv_conf(&p, HOST, &d).0, "search lan example.com\nnameserver 10.96.0.10\noptions ndots:5\n");
        p.metadata.namespace.clear();
        assert!(resolv_conf(&p, "", &cluster()).0.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local\n"));
        // dnsConfig merges over the cluster setup
        p.spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["10.96.0.10".into(), "1.1.1.1".into()],
            searches: vec!["cluster.local".into(), "extra".into()],
            options: vec![PodDnsConfigOption { name: "ndots".into(), value: Some("2".into()) }],
        });
        assert_eq!(
            resolv_conf(&p, "", &cluster()).0,
            "search default.svc.cluster.local svc.cluster.local cluster.local extra\nnameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn resolv_merge_and_limits() {
        let mut p = pod();
        p.spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["1.1.1.1".into(), "9.9.9.9".into(), "8.8.8.8".into()],
            searches: vec!["lan".into(), "svc.local".into()],
            options: vec![
                PodDnsConfigOption { name: "ndots".into(), value: Some("5".into()) },
                PodDnsConfigOption { name: "single-request".into(), value: None },
            ],
        });
        assert_eq!(
            resolv_conf(&p, HOST, &DnsSettings::default()).0,
            "search lan example.com svc.local\nnameserver 10.0.0.1\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n\
             options ndots:5 edns0 single-request\n"
        );
        p.spec.dns_policy = "None".into();
        assert_eq!(
            resolv_conf(&p, HOST, &DnsSettings::default()).0,
            "search lan svc.local\nnameserver 1.1.1.1\nnameserver 9.9.9.9\nnameserver 8.8.8.8\noptions ndots:5 single-request\n"
        );
        p.spec.dns_config = Some(PodDnsConfig {
            searches: (0..40).map(|i| format!("s{i}")).collect(),
            ..Default::default()
        });
        let r = resolv_conf(&p, "", &DnsSettings::default()).0;
        assert_eq!(r.split_whitespace().count(), 33, "{r}");
    }
}
