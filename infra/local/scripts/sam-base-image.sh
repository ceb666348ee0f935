#!/usr/bin/env bash
# Builds, offline, the base image the SAM CLI runs a `provided.al2023` function in
# (public.ecr.aws/lambda/provided:al2023-x86_64), for machines that cannot pull it.
#
# The image is a root file system of a few MB taken from this host: a POSIX shell and the
# few tools SAM's own Dockerfile runs on top of the base (mv, chmod, cp, rm), the shared
# libraries they and the function binaries link (glibc, libm, libgcc_s, found with ldd),
# CA certificates, /etc/passwd and /tmp. The function binaries are built on this host, so
# the glibc inside is the one they were linked against.
#
# Idempotent: the image carries a label with a hash of its contents; an image with the
# same hash is kept, a different one is replaced, together with the "rapid" image SAM
# derived from it (SAM would go on using that one). An image of that name WITHOUT our
# label (the real one, pulled from ECR on a machine that can) is never touched.
#
#   infra/local/scripts/sam-base-image.sh [function binary ...]
set -euo pipefail

image="public.ecr.aws/lambda/provided:al2023-x86_64"
rapid="public.ecr.aws/lambda/provided:al2023-rapid-x86_64"
label="eds.base-image.hash"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "the SAM CLI tests need a running Docker engine (docker info failed); run make test SAM_LOCAL=0 to skip them on a machine without one" >&2
  exit 1
fi

existing="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true)"
if docker image inspect "$image" >/dev/null 2>&1 && { [ -z "$existing" ] || [ "$existing" = "<no value>" ]; }; then
  echo "base image: $image exists and was not built here; leaving it alone" >&2
  exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

tools=(dash mv chmod cp rm ls cat mkdir ln)
files=()
for t in "${tools[@]}"; do
  p="$(command -v "$t")"
  files+=("$(readlink -f "$p")")
done
# Every library the tools and the given binaries link (ldd's "=> /path" and the loader).
libs_of() {
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]*ld-linux/ { print $1 }'
}
libs=()
for f in "${files[@]}" "$@"; do
  [ -e "$f" ] || continue
  while read -r l; do [ -n "$l" ] && libs+=("$l"); done < <(libs_of "$f")
done
# What every Rust binary built on this host needs, even if none was given.
for l in libc.so.6 libm.so.6 libgcc_s.so.1; do
  p="$(ldconfig -p | awk -v n="$l" '$1 == n && /x86-64/ { print $NF; exit }')"
  [ -n "$p" ] && libs+=("$p")
done
loader="$(readlink -f /lib64/ld-linux-x86-64.so.2)"

mkdir -p "$root"/{bin,usr/bin,lib64,etc/ssl/certs,tmp,var/task,var/runtime,var/rapid,opt}
chmod 1777 "$root/tmp"
for f in "${files[@]}"; do cp -L "$f" "$root/usr/bin/"; done
ln -s /usr/bin/dash "$root/bin/sh"
for t in mv chmod cp rm ls cat mkdir ln; do ln -sf "/usr/bin/$(basename "$(readlink -f "$(command -v "$t")")")" "$root/bin/$t"; done
for l in $(printf '%s\n' "${libs[@]}" | sort -u); do
  mkdir -p "$root$(dirname "$l")"
  cp -L "$l" "$root$l"
done
cp -L "$loader" "$root/lib64/ld-linux-x86-64.so.2"
[ -r /etc/ssl/certs/ca-certificates.crt ] && cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"

# The contents' hash: every path, mode and file digest, in a fixed order.
hash="$(cd "$root" && find . -print0 | LC_ALL=C sort -z \
  | xargs -0 stat -c '%n %a %F' | sha256sum | cut -c1-16)-$(cd "$root" && find . -type f -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"

if [ "$existing" = "$hash" ]; then
  echo "base image: $image is up to date ($hash)" >&2
  exit 0
fi
if docker image inspect "$rapid" >/dev/null 2>&1; then
  docker image rm -f "$rapid" >/dev/null
fi
tar -C "$root" -c . | docker import \
  --change "LABEL $label=$hash" \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 TZ=:/etc/localtime LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/var/rapid/aws-lambda-rie"]' \
  - "$image" >/dev/null
echo "base image: built $image ($hash, $(du -sh "$root" | cut -f1))" >&2
