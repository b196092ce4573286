//! What each tool's man page says that its clap definition cannot: the words around the
//! commands (see [`crate::man::Page`]). Keep it true to the code and to docs/<tool>.md.

use crate::man::Page;

pub static NSCTL: Page = Page {
    description: &[
        "nsctl manages network namespaces and what lives in them: named namespaces, veth pairs \
         (the other end possibly in another namespace, on a bridge there), bridges, dummy and \
         802.1Q VLAN devices, the state, master, MTU, MAC and namespace of any link, IPv4 and \
         IPv6 addresses, and per-namespace sysctls. It talks to the kernel itself (rtnetlink, /proc/sys) and never runs ip(8).",
        "Interface names are 1 to 15 bytes without /, white space or :. Namespace names are 1 to \
         64 of A-Z a-z 0-9 _ . - and not . or .. (anything else is exit 2).",
    ],
    json: &[
        (
            "netns add and del, and netns list:",
            &[
                r#"{"changed":true,"netns":{"name":"c00","path":"/run/netns/c00"}}"#,
                r#"{"changed":false,"netns":[{"name":..,"path":..},..]}"#,
            ],
        ),
        (
            "link list (kind as the kernel names it: veth, bridge, tun for wireguard-go, \
             wireguard, vrf, dummy, vlan; state is the administrative state, operstate what \
             the kernel says of the link; peer and peer_netns for a veth):",
            &[
                r#"{"changed":false,"links":[{"name":..,"index":..,"kind":..,"netns":..|null,"#,
                r#"  "state":"up"|"down","operstate":"up"|"down"|"lowerlayerdown"|..,"#,
                r#"  "carrier":true|false,"address":MAC,"master":..|null,"mtu":..,"#,
                r#"  "peer":..|null,"peer_netns":..|null,"addresses":["CIDR",..]},..]}"#,
            ],
        ),
        (
            "addr list (exec prints nothing of its own, the output is the command's):",
            &[
                r#"{"changed":false,"addresses":[{"cidr":..,"dev":..,"family":"inet"|"inet6","#,
                r#"  "netns":..|null,"scope":"global"|"link"|"host"|..,"flags":["tentative",..],"#,
                r#"  "valid_life_time":SECS,"preferred_life_time":SECS},..]}"#,
                "(4294967295 seconds: forever)",
            ],
        ),
    ],
    exit_status: &["exec exits with the status of the command it ran (it replaces nsctl)."],
    environment: &[],
    files: &[
        (
            "/run/netns/NAME",
            "A named network namespace: the bind mount that keeps it alive, as ip netns makes it.",
        ),
        (
            "/etc/netns/NAME/FILE",
            "Bound over /etc/FILE for the command that exec runs (resolv.conf, hosts, ...), as \
             ip netns exec does.",
        ),
    ],
    examples: &[
        (
            "A namespace with its loopback up, and forwarding on:",
            &[
                "nsctl netns add c00",
                "nsctl --ns c00 link set lo --up",
                "nsctl --ns c00 sysctl net.ipv4.ip_forward=1",
            ],
        ),
        (
            "A bridge in namespace hub, and a veth pair from it into c00 with an address there:",
            &[
                "nsctl --ns hub bridge add br-internal --up",
                "nsctl --ns hub veth add c00-br --peer c00-in --peer-ns c00 \\",
                "    --master br-internal --up",
                "nsctl --ns c00 addr add 100.64.0.1/24 --dev c00-in",
            ],
        ),
        (
            "What would change, changing nothing:",
            &["nsctl --check --ns c00 link set c00-in --mtu 1400 | jq .changed"],
        ),
        (
            "A command inside the namespace:",
            &["nsctl exec c00 -- conntrack -L -n"],
        ),
    ],
    see_also: &[
        "ip(8)",
        "ip-netns(8)",
        "ip-link(8)",
        "ip-address(8)",
        "sysctl(8)",
    ],
};

pub static WGCTL: Page = Page {
    description: &[
        "wgctl makes WireGuard keys, interfaces and peers, with the kernel's WireGuard or, where \
         the kernel has none, a userspace implementation: wireguard-go or boringtun \
         (boringtun-cli) (--backend auto and --userspace choose; the JSON says which).",
        "iface add creates the interface in the namespace --ns names, the birthplace: its UDP \
         socket is opened there and stays there. With --into-ns the interface is then moved \
         into another namespace and brought up in it (wgd's is made there at once when \
         --into-ns names a namespace, and closed when that name is deleted), so that the \
         tunnel's traffic lives in one namespace while its encrypted packets go out through \
         another.",
        "Private and preshared keys are read from files, which must not be accessible by \
         others, and never printed: only public keys appear in the output. genkey, genpsk and \
         pubkey need no privilege, like wg genkey.",
    ],
    json: &[
        (
            "iface add:",
            &[
                r#"{"changed":..,"interface":{"name":..,"netns":..,"#,
                r#"  "backend":"kernel"|"userspace","userspace":"boringtun"|"wireguard-go"|null,"#,
                r#"  "public_key":..,"listen_port":..}}"#,
            ],
        ),
        (
            "show (never a private or preshared key, only whether a peer has one):",
            &[
                r#"{"changed":false,"interfaces":[{"name":..,"backend":..,"userspace":..,"#,
                r#"  "public_key":..,"listen_port":..,"fwmark":..|null,"mtu":..,"#,
                r#"  "state":"up"|"down","#,
                r#"  "peers":[{"public_key":..,"endpoint":..|null,"allowed_ips":[..],"#,
                r#"    "latest_handshake":UNIX_SECONDS|null,"rx_bytes":..,"tx_bytes":..,"#,
                r#"    "persistent_keepalive":..|null,"preshared_key":true|false}]}]}"#,
            ],
        ),
        (
            "genkey and genpsk without --out print the bare key, base64, like wg genkey and wg \
             genpsk; with --out they write the file (mode 0600, never overwritten; an existing \
             valid key file is kept, changed false) and print JSON, genkey its public key and \
             genpsk no key at all:",
            &[r#"{"changed":true,"public_key":..}"#, r#"{"changed":true}"#],
        ),
    ],
    exit_status: &[],
    environment: &[
        (
            "NIRANSIX_WG_USERSPACE",
            "wireguard-go or boringtun: the --userspace of iface add when it is not given.",
        ),
        (
            "WG_USERSPACE_IMPLEMENTATION, WG_QUICK_USERSPACE_IMPLEMENTATION",
            "The program --userspace wireguard-go starts instead of wireguard-go, as wg-quick \
             honours them.",
        ),
    ],
    files: &[
        (
            "/var/run/wireguard/NAME.sock",
            "The UAPI socket of a userspace interface, through which wgctl configures it and \
             finds its process, wherever the interface has moved.",
        ),
        (
            "/var/run/wireguard/N.sock",
            "boringtun's own name for the same socket (N: the descriptor of its TUN device); \
             NAME.sock is a hard link to it.",
        ),
    ],
    examples: &[
        (
            "A key pair, the private key in a file:",
            &["wgctl genkey --out /var/lib/niransix/peers/c00.key"],
        ),
        (
            "An interface listening in namespace hub, living in c00, with one peer:",
            &[
                "wgctl --ns hub iface add c00-wg --into-ns c00 \\",
                "    --private-key /var/lib/niransix/peers/c00.key --listen-port 50000",
                "wgctl --ns c00 peer add c00-wg --public-key KEY --allowed-ips 0.0.0.0/0,::/0",
            ],
        ),
        (
            "The latest handshake of every peer in c00:",
            &["wgctl --ns c00 show | jq '.interfaces[].peers[] | {public_key, latest_handshake}'"],
        ),
    ],
    see_also: &["wg(8)", "wg-quick(8)", "ip-link(8)"],
};

pub static NATCTL: Page = Page {
    description: &[
        "natctl keeps NAT, mark, conntrack zone and filter rules in a table of its own, table \
         inet natctl, in the namespace it acts on, and never touches any other table. Every command is one atomic nftables \
         transaction. Every rule carries its canonical arguments in its comment, so list reads \
         the rules back exactly and the same arguments always give the same rule id: adding a \
         rule again is changed false.",
        "IPv4 and IPv6 both work: the family follows the addresses given.",
    ],
    json: &[(
        "Every rule command prints the rule with its id and its arguments; list prints every \
             rule, read back from the kernel, with packet and byte counters. del of an unknown \
             id succeeds with changed false.",
        &[
            r#"{"changed":..,"rule":{"id":..,"#,
            r#"  "kind":"masquerade"|"snat"|"dnat"|"netmap"|"zone"|"mark"|"connmark"|"filter","#,
            r#"  "netns":..|null,"family":"inet"|"inet6"|"any",..its arguments}}"#,
            r#"{"changed":false,"rules":[{..the same,"chain":..,"handle":..,"packets":..,"bytes":..},..]}"#,
        ],
    )],
    exit_status: &[],
    environment: &[],
    files: &[],
    examples: &[
        (
            "NAPT of everything that leaves through c00-in:",
            &["natctl --ns c00 masquerade --oif c00-in"],
        ),
        (
            "A port forward (nft: ip daddr 203.0.113.254 tcp dport 54321 dnat to 192.0.2.1):",
            &[
                "natctl --ns router dnat --daddr 203.0.113.254 --proto tcp --dport 54321 \\",
                "    --to 192.0.2.1",
            ],
        ),
        (
            "Map a whole prefix onto another, like iptables NETMAP:",
            &["natctl --ns site1 netmap --dst 10.200.1.0/24 --to 192.168.1.0/24 --iif wg0"],
        ),
        (
            "Every rule with its counters, then remove one:",
            &[
                "natctl --ns c00 list | jq -c '.rules[]'",
                "natctl --ns c00 del ID",
            ],
        ),
    ],
    see_also: &["nft(8)", "conntrack(8)", "iptables-extensions(8)"],
};

pub static ROUTECTL: Page = Page {
    description: &[
        "routectl adds and removes policy routing rules, routes in any table and VRF devices, \
         and lists them as the kernel reports them. Tables are numbers from 1 to 4294967294, \
         main, local and default, or names defined in /etc/iproute2/rt_tables (as ip reads \
         them).",
        "An identical rule or route already present is changed false; deleting what is not \
         there is changed false.",
    ],
    json: &[(
        "rule list, route list and vrf list; a table is printed by its name when it has one \
         (main, local, default), like ip:",
        &[
            r#"{"changed":false,"rules":[..]}"#,
            r#"{"changed":false,"routes":[..]}"#,
            r#"{"changed":false,"vrfs":[{"name":..,"table":..,"table_id":..,"members":[..]}]}"#,
        ],
    )],
    exit_status: &[],
    environment: &[],
    files: &[(
        "/etc/iproute2/rt_tables, /etc/iproute2/rt_tables.d/*.conf",
        "Routing table names as ip reads them; shell completion offers them after --table.",
    )],
    examples: &[
        (
            "Traffic marked 1 looks up table 100, whose default route goes through wg0:",
            &[
                "routectl rule add --fwmark 1 --table 100 --priority 1000",
                "routectl route add default --dev wg0 --table 100",
            ],
        ),
        (
            "The default route of namespace c00 into its tunnel:",
            &["routectl --ns c00 route add default --dev c00-wg"],
        ),
        (
            "Every route of every table:",
            &["routectl route list --table all | jq -c '.routes[]'"],
        ),
        (
            "A VRF with table 10, and an interface in it:",
            &[
                "routectl vrf add blue --table 10",
                "routectl vrf enslave eth1 --vrf blue",
            ],
        ),
    ],
    see_also: &["ip-rule(8)", "ip-route(8)", "ip-vrf(8)"],
};
