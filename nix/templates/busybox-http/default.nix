# A self-contained HTTP app: busybox httpd serving a page (or a directory of static files).
# Needs no nixpkgs, so it builds on offline installs and in Convoy's own tests.
{ convoyBusybox ? "/usr/bin/busybox"
, content ? "<!doctype html>\n<title>Convoy</title>\n<h1>Hello from Convoy</h1>\n"
, port ? "8080"
  # A directory of static files to serve instead of `content` (e.g. a cloned repository).
, src ? null
}:
let
  convoy = import ../../lib;
  site = if src == null then "" else convoy.bootstrap.sourceTree src;
  checkedPort =
    if builtins.match "[0-9]{1,5}" port == null
    then throw "busybox-http: port must be a number, got \"${port}\""
    else port;
in
{
  app = convoy.bootstrap.runBusybox {
    name = "busybox-http";
    busybox = convoyBusybox;
    env = { inherit content site; port = checkedPort; };
    script = ''
      www="$out/share/www"
      mkdir -p "$out/bin" "$www"
      if [ -n "$site" ]; then
        cp -R "$site/." "$www/"
        chmod -R u+w "$www"
      else
        printf '%s' "$content" > "$www/index.html"
      fi
      printf 'ok\n' > "$www/healthz"
      # PORT set at run time wins over the port chosen at build time.
      printf '#!%s sh\nexec %s httpd -f -v -p "''${PORT:-%s}" -h %s\n' \
        "$busybox/busybox" "$busybox/busybox" "$port" "$www" > "$out/bin/convoy-start"
      chmod 0555 "$out/bin/convoy-start"
    '';
  };
}
