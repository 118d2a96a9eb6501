# Convoy's Nix library.
#   bootstrap       needs nothing but a static busybox from the build machine (offline installs, tests);
#   withPkgs pkgs   helpers on top of nixpkgs for the language templates.
# Convention: every component output has bin/convoy-start, the command its image runs.
{
  bootstrap = import ./bootstrap.nix;
  withPkgs = pkgs: import ./nixpkgs.nix { inherit pkgs; };
}
