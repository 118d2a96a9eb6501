# Helpers on top of nixpkgs, shared by the language templates.
{ pkgs }:
let
  inherit (pkgs) lib;
in
rec {
  # The repository as a store path, without VCS data or local build leftovers.
  sourceTree = src: builtins.path {
    name = "source";
    path = src;
    filter = path: type: !(builtins.elem (baseNameOf path) [ ".git" "node_modules" "result" "__pycache__" ]);
  };

  # A name Nix accepts for a derivation (npm scopes and odd characters become dashes).
  packageName = name:
    let cleaned = lib.strings.sanitizeDerivationName (lib.removePrefix "@" name);
    in if cleaned == "" then "app" else cleaned;

  # The first of `dirs` (relative to `root`) that holds `file`, or null.
  firstDirWith = root: file: dirs:
    lib.findFirst (dir: builtins.pathExists "${root}/${dir}/${file}") null dirs;

  # The command a component's image runs: bin/convoy-start (bash, strict mode, inputs on PATH).
  startScript = { runtimeInputs ? [ ], text }:
    pkgs.writeShellApplication { name = "convoy-start"; inherit runtimeInputs text; };

  # A component output: the start script next to the package it runs.
  component = { name, start, package ? null }:
    pkgs.symlinkJoin { inherit name; paths = [ start ] ++ lib.optional (package != null) package; };

  # The nixpkgs attribute for one requirements.txt / PEP 508 line, or null for blanks, comments and
  # pip options. Names are normalised the way nixpkgs names Python packages (lower case, dashes).
  pythonRequirementName = line:
    let m = builtins.match "[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*).*" line;
    in if m == null then null
       else lib.toLower (builtins.replaceStrings [ "_" "." ] [ "-" "-" ] (builtins.head m));
}
