# A Go app from a repository with go.mod. With dependencies, pass `vendorHash` (a build without it
# fails and prints the hash to use) or commit a vendor/ directory.
{ pkgs ? import <nixpkgs> { }
, src
, vendorHash ? null
, subPackage ? "."
, port ? "8080"
}:
let
  inherit (pkgs) lib;
  convoy = (import ../../lib).withPkgs pkgs;
  source = convoy.sourceTree src;

  goModLines = lib.splitString "\n" (builtins.readFile "${source}/go.mod");
  moduleMatches = lib.filter (m: m != null) (map (builtins.match "module[[:space:]]+([^[:space:]]+)[[:space:]]*") goModLines);
  modulePath = if moduleMatches == [ ] then "app" else builtins.head (builtins.head moduleMatches);

  app = pkgs.buildGoModule {
    pname = convoy.packageName (baseNameOf modulePath);
    version = "0.0.0";
    src = source;
    inherit vendorHash;
    subPackages = [ subPackage ];
    env.CGO_ENABLED = "0";
    ldflags = [ "-s" "-w" ];
  };
in
{
  app = convoy.component {
    name = "go-app";
    package = app;
    start = convoy.startScript {
      text = ''
        export PORT="''${PORT:-${port}}"
        # subPackages builds exactly one binary.
        binaries=( "${app}"/bin/* )
        exec "''${binaries[0]}" "$@"
      '';
    };
  };
}
