# One Garage node: its layout applied once, the key S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY
# imported and allowed on the bucket S3_BUCKET; /tmp/ready says all of that is done.
set -eu
umask 077
rm -f /tmp/ready
: "${GARAGE_RPC_SECRET:?}" "${S3_ACCESS_KEY_ID:?}" "${S3_SECRET_ACCESS_KEY:?}" "${S3_BUCKET:?}"
config=/tmp/garage.toml
cat > "$config" <<TOML
metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "0.0.0.0:3900"
root_domain = ".s3.garage.localhost"
TOML
g() { garage -c "$config" "$@"; }
g server &
server=$!
trap 'kill -TERM "$server"; wait "$server"; exit 0' TERM INT
until g status >/dev/null 2>&1; do
  kill -0 "$server" || exit 1
  sleep 0.2
done
if g status 2>/dev/null | grep -q "NO ROLE ASSIGNED"; then
  node=$(g node id -q 2>/dev/null | cut -d@ -f1)
  g layout assign -z dc1 -c 10G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
fi
until g bucket list >/dev/null 2>&1; do sleep 0.2; done
g key info "$S3_ACCESS_KEY_ID" >/dev/null 2>&1 ||
  g key import --yes -n tessera "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" >/dev/null
g bucket info "$S3_BUCKET" >/dev/null 2>&1 || g bucket create "$S3_BUCKET" >/dev/null
g bucket allow --read --write --owner "$S3_BUCKET" --key "$S3_ACCESS_KEY_ID" >/dev/null
touch /tmp/ready
wait "$server"
