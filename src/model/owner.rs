//! The container or systemd unit a cgroup path names (docker, containerd, CRI-O,
//! podman and the kubelet, under either cgroup driver).

/// What a cgroup path says of its processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// A container runtime's name and the container's id (64 hex digits).
    pub container: Option<(&'static str, String)>,
    /// A Kubernetes pod's uid.
    pub pod: Option<String>,
    /// The systemd unit (a service or a scope) the processes run in.
    pub unit: Option<String>,
}

/// Reads the container, pod and unit from the names that docker, containerd, CRI-O,
/// podman, the kubelet and systemd give their cgroups, with either cgroup driver:
/// `/system.slice/docker-ID.scope`, `/docker/ID`, `/kubepods/burstable/podUID/ID`,
/// `/kubepods.slice/.../kubepods-besteffort-podUID.slice/cri-containerd-ID.scope`.
pub fn owner(path: &str) -> Owner {
    let mut o = Owner::default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let kube = segments.iter().any(|s| s.starts_with("kubepods"));
    for (i, seg) in segments.iter().enumerate() {
        let base = seg.strip_suffix(".scope").unwrap_or(seg);
        let runtimes = [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ];
        for (prefix, runtime) in runtimes {
            if let Some(id) = base.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                o.container = Some((runtime, id.to_string()));
            }
        }
        if is_container_id(seg) {
            let runtime = match i.checked_sub(1).map(|p| segments[p]) {
                Some("docker") => "docker",
                Some("libpod_parent") => "podman",
                _ if kube => "kubernetes",
                _ => continue,
            };
            o.container = Some((runtime, seg.to_string()));
        }
        if kube {
            // `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid with _>.slice` (systemd).
            let name = seg.strip_suffix(".slice").unwrap_or(seg);
            let uid = name
                .strip_prefix("pod")
                .or_else(|| name.rsplit_once("-pod").map(|(_, uid)| uid));
            if let Some(uid) = uid {
                if uid.len() >= 32 {
                    o.pod = Some(uid.replace('_', "-"));
                }
            }
        }
    }
    if o.container.is_none() {
        o.unit = segments
            .last()
            .filter(|s| s.ends_with(".service") || s.ends_with(".scope"))
            .map(|s| s.to_string());
    }
    o
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The CGROUP column of `--wide`: a container as `RUNTIME:ID` (12 digits, as
/// `docker ps` shows it), else the unit, else the path.
pub fn label(path: &str) -> String {
    let o = owner(path);
    match (o.container, o.unit) {
        (Some((runtime, id)), _) => format!("{runtime}:{}", &id[..12]),
        (None, Some(unit)) => unit,
        (None, None) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

    fn container(path: &str) -> Option<(&'static str, String)> {
        owner(path).container
    }

    #[test]
    fn containers_of_each_runtime_and_driver() {
        let docker = Some(("docker", ID.to_string()));
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")),
            docker
        );
        assert_eq!(container(&format!("/docker/{ID}")), docker);
        assert_eq!(
            container(&format!(
                "/system.slice/containerd.service/cri-containerd-{ID}.scope"
            )),
            Some(("containerd", ID.to_string()))
        );
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some(("podman", ID.to_string()))
        );
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-burstable.slice/crio-{ID}.scope"
            )),
            Some(("cri-o", ID.to_string()))
        );
        // Not 64 hex digits: no container.
        assert_eq!(container("/system.slice/docker-12ab.scope"), None);
        assert_eq!(container("/user.slice/user-0.slice/session-3.scope"), None);
    }

    #[test]
    fn kubernetes_pods_with_either_driver() {
        let pod = "8d3a6f0e-1b2c-4d5e-9f80-112233445566";
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            pod.replace('-', "_")
        );
        let o = owner(&systemd);
        assert_eq!(o.pod.as_deref(), Some(pod));
        assert_eq!(o.container, Some(("containerd", ID.to_string())));
        let o = owner(&format!("/kubepods/burstable/pod{pod}/{ID}"));
        assert_eq!(o.pod.as_deref(), Some(pod));
        assert_eq!(o.container, Some(("kubernetes", ID.to_string())));
        assert_eq!(o.unit, None);
    }

    #[test]
    fn units_and_labels() {
        let o = owner("/system.slice/nginx.service");
        assert_eq!(o.unit.as_deref(), Some("nginx.service"));
        assert_eq!(o.container, None);
        assert_eq!(label("/system.slice/nginx.service"), "nginx.service");
        assert_eq!(
            label(&format!("/system.slice/docker-{ID}.scope")),
            "docker:3f4e5a6b7c8d"
        );
        assert_eq!(label("/"), "/");
        assert_eq!(
            label("/user.slice/user-1000.slice"),
            "/user.slice/user-1000.slice"
        );
        assert_eq!(owner("/").unit, None);
    }
}
