# A Node.js app from a repository with package.json and package-lock.json (npm).
# Dependencies come from the lock file (importNpmLock: no hash to maintain); `npm run build` runs
# when package.json has a build script; the app starts with `npm start`, or `node <main>`.
{ pkgs ? import <nixpkgs> { }
, src
, nodejs ? pkgs.nodejs_20
, port ? "3000"
}:
let
  inherit (pkgs) lib;
  convoy = (import ../../lib).withPkgs pkgs;
  source = convoy.sourceTree src;
  packageJson = builtins.fromJSON (builtins.readFile "${source}/package.json");
  scripts = packageJson.scripts or { };

  app = pkgs.buildNpmPackage {
    pname = convoy.packageName (packageJson.name or "app");
    version = packageJson.version or "0.0.0";
    src = source;
    inherit nodejs;
    npmDeps = pkgs.importNpmLock { npmRoot = source; };
    npmConfigHook = pkgs.importNpmLock.npmConfigHook;
    dontNpmBuild = !(scripts ? build);
    # Keep the app as laid out in the repository, with its production dependencies.
    installPhase = ''
      runHook preInstall
      npm prune --omit=dev --no-save
      mkdir -p "$out/share"
      cp -r . "$out/share/app"
      runHook postInstall
    '';
  };

  run =
    if scripts ? start then "exec npm start"
    else "exec node ${lib.escapeShellArg (packageJson.main or "index.js")}";
in
{
  app = convoy.component {
    name = "nodejs-app";
    package = app;
    start = convoy.startScript {
      runtimeInputs = [ nodejs ];
      text = ''
        cd ${app}/share/app
        export PORT="''${PORT:-${port}}"
        export NODE_ENV="''${NODE_ENV:-production}"
        # npm wants a writable cache; the store is read-only.
        export npm_config_cache=/tmp/.npm npm_config_update_notifier=false
        ${run}
      '';
    };
  };
}
