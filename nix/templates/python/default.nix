# A Python app from a repository with requirements.txt and/or pyproject.toml.
# Each requirement maps to the nixpkgs package of the same (normalised) name; versions come from
# nixpkgs. The app runs `python <entry>`, entry being main.py, app.py or server.py unless given.
{ pkgs ? import <nixpkgs> { }
, src
, python ? pkgs.python3
, entry ? null
, port ? "8000"
}:
let
  inherit (pkgs) lib;
  convoy = (import ../../lib).withPkgs pkgs;
  source = convoy.sourceTree src;

  readIfExists = file: if builtins.pathExists "${source}/${file}" then builtins.readFile "${source}/${file}" else "";
  requirementsTxt = lib.splitString "\n" (readIfExists "requirements.txt");
  pyproject = if builtins.pathExists "${source}/pyproject.toml" then builtins.fromTOML (readIfExists "pyproject.toml") else { };
  requirementLines = requirementsTxt ++ (pyproject.project.dependencies or [ ]);
  requirementNames = lib.unique (lib.filter (name: name != null) (map convoy.pythonRequirementName requirementLines));

  pythonEnv = python.withPackages (ps: map
    (name: ps.${name} or (throw "python template: no nixpkgs package named ${name} (from your requirements)"))
    requirementNames);

  entryFile =
    if entry != null then entry
    else lib.findFirst (file: builtins.pathExists "${source}/${file}")
      (throw "python template: no main.py, app.py or server.py; pass `entry`")
      [ "main.py" "app.py" "server.py" ];

  app = pkgs.runCommand "python-app-source" { } ''
    mkdir -p "$out/share"
    cp -r ${source} "$out/share/app"
  '';
in
{
  app = convoy.component {
    name = "python-app";
    package = app;
    start = convoy.startScript {
      runtimeInputs = [ pythonEnv ];
      text = ''
        cd ${app}/share/app
        export PORT="''${PORT:-${port}}"
        # The store is read-only: no .pyc writes, unbuffered logs.
        export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
        exec python ${lib.escapeShellArg entryFile} "$@"
      '';
    };
  };
}
