# Derivations without nixpkgs: the builder is a static busybox taken from the build machine.
# Convoy passes it as the `convoyBusybox` argument: a real path (no symlinked directory in it) to a
# file named `busybox`, because busybox picks its applet from the name it is run as.
rec {
  # The busybox binary alone, as a store path holding `busybox`.
  busyboxStatic = busybox:
    if baseNameOf busybox != "busybox"
    then throw "convoy: the static busybox must be a file named busybox, got ${busybox}"
    else builtins.path {
      name = "busybox-static";
      path = dirOf busybox;
      filter = path: type: path == busybox;
    };

  # A directory copied into the store without its version-control data.
  sourceTree = src: builtins.path {
    name = "source";
    path = src;
    filter = path: type: baseNameOf path != ".git";
  };

  # A derivation built by a busybox shell script (`set -eu`, every applet on PATH).
  # `env` becomes the builder's environment; `$busybox` is the busybox store path.
  runBusybox = { name, busybox, script, env ? { } }:
    let bb = busyboxStatic busybox; in
    derivation (env // {
      inherit name;
      system = builtins.currentSystem;
      busybox = bb;
      builder = "${bb}/busybox";
      args = [ "sh" "-euc" ''
        ${bb}/busybox mkdir -p "$TMPDIR/.applets"
        ${bb}/busybox --install -s "$TMPDIR/.applets"
        export PATH="$TMPDIR/.applets"
        ${script}
      '' ];
    });
}
