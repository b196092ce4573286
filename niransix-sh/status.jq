# niransix-sh/status.jq — what `hub status` and `hub check` print: the hub's records held against
# what the kernel reports, one JSON object. Every problem names the object and what is wrong with
# it, in words a person can act on ('hub up' repairs all of them).
#
# Inputs (from cmd_status in niransix-sh/hub):
#   $records  the peer records (slurped)        $shows    "OWNER<TAB>JSON" lines: what the tools
#   $netns    the namespaces that exist                   printed (OWNER: center:links,
#   $ports    UDP ports open in the center                center:switch, center:fwd, NAME:links,
#   $placed   "NAME<TAB>BRIDGE<TAB>ADDRESS6": each        NAME:fwd, NAME:wg, NAME:routes, NAME:nat)
#             peer's bridge and v6 address (empty: no HUB_CIDR6)
#   $trunks   "BRIDGE<TAB>DOWN<TAB>UP": the extra bridges in use and the veth that joins each
#   $prefix $ns $sw $br $cif $cbr $addr $cidr $cidr_len $recorded $cidr6 $addr6 $cidr6_len
#   $mode $mark_base $rule_priority: the configuration
# HUB_MODE=zones: every peer's objects are in the center, read once for all (OWNER center:wg,
# center:nat, center:rules, center:routes) instead of per peer.

def nonempty_lines: split("\n") | map(select(length > 0));
def set: map({key: ., value: true}) | from_entries;
def by_name: (.links // []) | map({key: .name, value: .}) | from_entries;
def where($space): if $space == "" then "the host" else "namespace \($space)" end;

# link_problems(LINKS; NAME; WHAT; WHERE): NAME missing or down.
def link_problems($links; $name; $what; $where):
  $links[$name] as $l
  | if $l == null then "\($what) \($name) is missing in \($where)"
    elif $l.state != "up" then "\($what) \($name) is down in \($where)"
    else empty end;

# port_problems(LINKS; NAME; BRIDGE; WHERE): NAME missing, down, or not a port of BRIDGE.
def port_problems($links; $name; $bridge; $where):
  link_problems($links; $name; "bridge port"; $where),
  ($links[$name] | select(. != null and .master != $bridge)
   | "\($name) is not a port of bridge \($bridge) in \($where) (its master: \(.master // "none"))");

def address_problem($links; $name; $cidr):
  $links[$name] | select(. != null and (any(.addresses[]; . == $cidr) | not))
  | "\($name) lacks its address \($cidr)";

def forwarding_problem($fwd; $where):
  if $fwd.sysctl.value != "1" then "IPv4 forwarding is off in \($where)" else empty end;

# tunnel_problems(I; P; R; PWG; LINKS; WHERE): the peer's WireGuard interface I (null: none)
# and P, its client as a peer of it (null: none), held against the record R.
def tunnel_problems($i; $p; $r; $pwg; $pl; $pwhere):
  if $i == null then "WireGuard interface \($pwg) is missing in \($pwhere) (its wireguard-go process or the interface is gone)"
  else
    link_problems($pl; $pwg; "WireGuard interface"; $pwhere),
    (if $i.public_key != $r.public_key then "\($pwg) has the public key \($i.public_key), not the recorded \($r.public_key)" else empty end),
    (if $i.listen_port != $r.listen_port then "\($pwg) listens on port \($i.listen_port), not the recorded \($r.listen_port)" else empty end),
    (if $p == null then "the client's key \($r.client_public_key) is not a peer of \($pwg)"
     else
       (if ($p.persistent_keepalive // 0) != ($r.keepalive // 0)
        then "\($pwg) keeps the client alive every \($p.persistent_keepalive // "never") s, not the recorded \($r.keepalive // "never")" else empty end),
       (if ($r.preshared_key // false) and ($p.preshared_key | not)
        then "the client's peer on \($pwg) has no preshared key (the record has one)"
        elif ($r.preshared_key // false | not) and $p.preshared_key
        then "the client's peer on \($pwg) has a preshared key (the record has none)" else empty end),
       (($p.allowed_ips // []) | sort) as $ips
       | (if $ips != ["0.0.0.0/0", "::/0"]
          then "the client's peer on \($pwg) routes \($ips | join(",") | if . == "" then "nothing" else . end), not 0.0.0.0/0,::/0" else empty end)
     end),
    ($i.peers[]? | select(.public_key != $r.client_public_key)
     | "\($pwg) has a peer the hub did not add: \(.public_key)"),
    (if $r.mtu != null and ($pl[$pwg].mtu // $r.mtu) != $r.mtu
     then "\($pwg) has MTU \($pl[$pwg].mtu), not the recorded \($r.mtu)" else empty end)
  end;

# default_route_problem(ROUTES; PWG; TABLE; FAMILY; WHERE): no default route into PWG in TABLE.
def default_route_problem($routes; $pwg; $table; $family; $where):
  if any($routes[]?; .dst == "default" and .dev == $pwg and .family == $family
         and (.table == $table or .table_id == $table)) then empty
  else "no \(if $family == "inet6" then "IPv6 " else "" end)default route into \($pwg)\(if $table == "main" then "" else " in table \($table)" end) in \($where)" end;

# nat_integrity(RULES; WHERE): natctl rules whose kernel rules are not what their id stands for
# (changed behind natctl's back, the comment kept) or lack a part.
def nat_integrity($rules; $where):
  $rules[] | select(.tampered or (.complete == false))
  | "natctl rule \(.id) (\(.kind)\(if .iif then " --iif \(.iif)" elif .oif then " --oif \(.oif)" else "" end)) in \($where) \(if .tampered then "was changed behind natctl's back" else "lacks a part" end)";

# by_key(LIST; KEY): LIST grouped by KEY (a string or number; entries without one left out), so
# that each peer looks up its own entries instead of scanning every peer's.
def by_key($list; f): $list | map(select(f != null)) | group_by(f) | map({key: (.[0] | f | tostring), value: .}) | from_entries;

# zone_problems(R; PWG; A6; MARK; ZONE; CENTER; WHERE): HUB_MODE=zones: the peer's conntrack zone,
# connection mark, SNAT and return route, all in the center; CENTER holds the center's NAT rules
# by iif, routing rules by fwmark and routes by dev.
def zone_problems($r; $pwg; $a6; $mark; $zone; $center; $where):
  ($center.nat[$pwg] // []) as $nat
  | ($center.rules["\($mark)"] // []) as $rules
  | (if any($nat[]; .kind == "zone" and .iif == $pwg and .zone == $zone) then empty
     else "no conntrack zone \($zone) for traffic from \($pwg) in \($where)" end),
    (if any($nat[]; .kind == "connmark" and .iif == $pwg and .set == $mark) then empty
     else "no connection mark \($mark) for traffic from \($pwg) in \($where)" end),
    (if any($nat[]; .kind == "snat" and .iif == $pwg and .to == $r.address) then empty
     else "no SNAT of \($pwg)'s traffic to \($r.address) in \($where)" end),
    (if $a6 == "" or any($nat[]; .kind == "snat" and .iif == $pwg and .to == $a6) then empty
     else "no SNAT of \($pwg)'s traffic to \($a6) in \($where)" end),
    ([[false, $cidr], [false, $cidr6], [true, $addr], [true, $addr6]][] as [$local, $dst]
     | select($dst != "" and ($a6 != "" or ($dst | contains(":") | not)))
     | if any($nat[]; .kind == "filter" and .verdict == "accept" and .local == $local and .dst == $dst) then empty
       else "no filter letting \($pwg)'s traffic reach \($dst)\(if $local then " (the center itself)" else "" end) in \($where)" end),
    ([$cidr, $cidr6][] | select(. != "" and ($a6 != "" or (contains(":") | not))) as $src
     | if any($nat[]; .kind == "filter" and .early and .verdict == "drop" and .src == $src) then empty
       else "no filter dropping \($pwg)'s packets from \($src) (forged replies) in \($where)" end),
    ([false, true][] as $local
     | if any($nat[]; .kind == "filter" and .default == "drop" and .local == $local) then empty
       else "no filter dropping the rest of \($pwg)'s traffic\(if $local then " to the center itself" else "" end) in \($where)" end),
    nat_integrity($nat; $where),
    ([["inet", true], ["inet6", $a6 != ""]][] | select(.[1]) | .[0] as $family
     | (if any($rules[]; .family == $family and .fwmark == $mark and .table_id == $mark and .priority == $rule_priority) then empty
        else "no \(if $family == "inet6" then "IPv6 " else "" end)rule 'fwmark \($mark) lookup \($mark)' (priority \($rule_priority)) in \($where)" end),
       default_route_problem($center.routes[$pwg] // []; $pwg; $mark; $family; $where));

($shows | nonempty_lines | map(split("\t") | {key: .[0], value: (.[1] | fromjson)}) | from_entries) as $by
| ($netns | nonempty_lines | set) as $present
| ($ports | nonempty_lines | set) as $udp
| ($placed | nonempty_lines | map(split("\t") | {key: .[0], value: {bridge: .[1], address6: .[2]}})
   | from_entries) as $place
| where($ns) as $center_where
| where(if $sw == "" then $ns else $sw end) as $switch_where
| ($by["center:links"] | by_name) as $cl
| {nat: by_key($by["center:nat"].rules // []; .iif), rules: by_key($by["center:rules"].rules // []; .fwmark),
   routes: by_key($by["center:routes"].routes // []; .dev),
   wg: by_key($by["center:wg"].interfaces // []; .name),
   addresses: ($cl[$cif].addresses // [] | set),
   holders: ([$cl | to_entries[] | .key as $l | .value.addresses[]? | {a: split("/")[0], l: $l}]
             | group_by(.a) | map({key: .[0].a, value: map(.l)}) | from_entries)} as $center
| (if $sw == "" then $cl else $by["center:switch"] | by_name end) as $sl
| [if $recorded | not then "the hub is not up (no center record): run 'hub up'"
   elif $ns != "" and ($present[$ns] | not) then "center namespace \($ns) is missing"
   else
     (if $sw != "" and ($present[$sw] | not) then "switch namespace \($sw) (the bridge and every peer's port) is missing"
      else
        link_problems($sl; $br; "bridge"; $switch_where),
        port_problems($sl; $cbr; $br; $switch_where),
        ($trunks | nonempty_lines[] | split("\t") as [$kbr, $down, $up]
         | link_problems($sl; $kbr; "bridge"; $switch_where),
           port_problems($sl; $down; $br; $switch_where),
           port_problems($sl; $up; $kbr; $switch_where))
      end),
     link_problems($cl; $cif; "the center's interface"; $center_where),
     address_problem($cl; $cif; "\($addr)/\($cidr_len)"),
     (if $cidr6 != "" then address_problem($cl; $cif; "\($addr6)/\($cidr6_len)") else empty end),
     forwarding_problem($by["center:fwd"]; $center_where)
   end] as $center_problems
| [$records[] | . as $r
   | ($mode == "zones") as $zones
   | (if $zones then $ns else $prefix + $r.name end) as $pns
   | (if $zones then $center_where else where($pns) end) as $pwhere
   | ($prefix + $r.name + "-in") as $pin | ($prefix + $r.name + "-br") as $pbr | ($prefix + $r.name + "-wg") as $pwg
   | $place[$r.name].address6 as $a6
   | (if $zones then $center.wg[$pwg][0]
      else [$by["\($r.name):wg"].interfaces[]? | select(.name == $pwg)] | first end) as $i
   | ([$i.peers[]? | select(.public_key == $r.client_public_key)] | first) as $p
   | [if $zones then
        if $ns != "" and ($present[$ns] | not) then "center namespace \($ns) is missing"
        else
          tunnel_problems($i; $p; $r; $pwg; $cl; $pwhere),
          ([$r.address + "/32", if $cidr6 != "" then "\($a6)/128" else empty end][]
           | select($cl[$cif] != null and ($center.addresses[.] | not)) | "\($cif) lacks its address \(.)"),
          zone_problems($r; $pwg; $a6; $mark_base + $r.listen_port; $r.listen_port; $center; $pwhere)
        end
      elif $present[$pns] | not then "namespace \($pns) is missing"
      else
        ($by["\($r.name):links"] | by_name) as $pl
        | ($by["\($r.name):routes"].routes) as $routes
        | link_problems($pl; $pin; "veth"; $pwhere),
          address_problem($pl; $pin; "\($r.address)/\($cidr_len)"),
          (if $cidr6 != "" then address_problem($pl; $pin; "\($a6)/\($cidr6_len)") else empty end),
          forwarding_problem($by["\($r.name):fwd"]; $pwhere),
          tunnel_problems($i; $p; $r; $pwg; $pl; $pwhere),
          default_route_problem($routes; $pwg; "main"; "inet"; $pwhere),
          (if $cidr6 != "" then default_route_problem($routes; $pwg; "main"; "inet6"; $pwhere) else empty end),
          (if any($by["\($r.name):nat"].rules[]?; .kind == "masquerade" and .oif == $pin and (.tampered | not)) | not
           then "no NAPT rule (masquerade out of \($pin)) in \($pwhere)" else empty end),
          nat_integrity($by["\($r.name):nat"].rules // []; $pwhere),
          ($by["\($r.name):nat"].foreign_tables[]?
           | "nftables \(.) in \($pwhere) is not the hub's (only natctl's table belongs in a peer's namespace)")
      end,
      (if $zones then empty else port_problems($sl; $pbr; $place[$r.name].bridge; $switch_where) end),
      ([$r.address, if $a6 != "" then $a6 else empty end][] as $a
       | $center.holders[$a][]? | select(. != $cif or ($zones | not))
       | "\(.) in \($center_where) also holds \($r.name)'s address \($a)"),
      (if $zones or ($present[$pns] | not) then empty
       else ($by["\($r.name):links"] | by_name | to_entries[] | select(.key != $pin) | .key as $l
             | .value.addresses[]? | split("/")[0] | select(. == $r.address or . == $a6)
             | "\($l) in \($pwhere) also holds \($r.name)'s address \(.)") end),
      (if $zones or $cidr6 == "" or ($present[$pns] | not) or $by["\($r.name):fwd6"].sysctl.value == "1" then empty
       else "IPv6 forwarding is off in \($pwhere)" end),
      (if $udp["\($r.listen_port)"] then empty
       else "nothing listens on UDP port \($r.listen_port) in the center (\($center_where))" end)
     ] as $problems
   | {name: $r.name, ns: (if $pns == "" then null else $pns end), address: $r.address,
      address6: (if $a6 == "" then null else $a6 end), listen_port: $r.listen_port,
      public_key: $r.public_key, client_public_key: $r.client_public_key,
      preshared_key: ($r.preshared_key // false), keepalive: $r.keepalive, mtu: $r.mtu,
      dns: ($r.dns // "" | split(",") | map(select(length > 0))),
      interface: $pwg, up: ($i != null),
      endpoint: ($p.endpoint // null), allowed_ips: ($p.allowed_ips // []),
      latest_handshake: ($p.latest_handshake // null),
      rx_bytes: ($p.rx_bytes // 0), tx_bytes: ($p.tx_bytes // 0),
      healthy: ($problems | length == 0), problems: $problems}] as $peers
| {changed: false,
   healthy: (($center_problems | length == 0) and all($peers[]; .healthy)),
   mode: $mode,
   center: {ns: (if $ns == "" then null else $ns end), switch: (if $sw == "" then null else $sw end),
     bridge: $br, interface: $cif, address: $addr, cidr: $cidr,
     address6: (if $addr6 == "" then null else $addr6 end), cidr6: (if $cidr6 == "" then null else $cidr6 end),
     up: ($recorded and ($ns == "" or $present[$ns] == true)),
     healthy: ($center_problems | length == 0), problems: $center_problems},
   peers: $peers}
