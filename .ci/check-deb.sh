#!/usr/bin/env bash
# Inspect a built edge-agent .deb: the files it installs, the conffile, and
# the maintainer scripts (service user, config permissions, systemd unit).
set -euo pipefail
deb="$1"
fail() { echo "check-deb: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/edge-agent ./etc/edge-agent/agent.yaml ./usr/share/doc/edge-agent/README.md; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
grep -Eq " \./(usr/)?lib/systemd/system/edge-agent\.service\$" <<<"$contents" || fail "the systemd unit is not in the package"
grep -E " \./usr/bin/edge-agent\$" <<<"$contents" | grep -q '^-rwxr-xr-x' || fail "the binary is not 0755"

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -qx '/etc/edge-agent/agent.yaml' "$ctl/conffiles" || fail "agent.yaml is not a conffile"
grep -q '^Depends:.*adduser' "$ctl/control" || fail "adduser is not a dependency"
grep -Eq '^Depends:(.*[ ,])?procps([ ,]|$)' "$ctl/control" || fail "procps (/bin/kill, the unit's ExecReload) is not a dependency"
grep -q 'install -d -m 0750 /var/lib/edge-agent' "$ctl/postinst" || fail "postinst does not make the state directory (check before the first start)"
grep -Eq '^Recommends:(.*[ ,])?ca-certificates([ ,]|$)' "$ctl/control" || fail "ca-certificates is not recommended (https sensors need a CA bundle)"
grep -q 'adduser --system --group' "$ctl/postinst" || fail "postinst does not create the user"
grep -q 'chmod 0640 /etc/edge-agent/agent.yaml' "$ctl/postinst" || fail "postinst does not protect the config"
grep -q 'deb-systemd-helper' "$ctl/postinst" || fail "postinst does not register the unit"
grep -q 'deluser' "$ctl/postrm" || fail "postrm does not remove the user on purge"
for s in postinst postrm; do sh -n "$ctl/$s" || fail "$s is not valid sh"; done

# The packaged config is the production template and it validates.
x=$(mktemp -d)
dpkg-deb -x "$deb" "$x"
"$x/usr/bin/edge-agent" check --config "$x/etc/edge-agent/agent.yaml" >/dev/null || fail "the packaged config does not validate"
rm -rf "$x"
echo "check-deb: $deb ok ($(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(dpkg-deb -f "$deb" Architecture))"
