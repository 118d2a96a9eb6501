# A static site: the repository's index.html (at the root, or in public/, dist/, build/, site/ or
# _site/) and everything beside it, served by darkhttpd.
{ pkgs ? import <nixpkgs> { }
, src
, root ? null
, port ? "8080"
}:
let
  inherit (pkgs) lib;
  convoy = (import ../../lib).withPkgs pkgs;
  source = convoy.sourceTree src;
  siteRoot =
    if root != null then root
    else convoy.firstDirWith source "index.html" [ "." "public" "dist" "build" "site" "_site" ];

  site = pkgs.runCommand "static-site" { } ''
    mkdir -p "$out/share"
    cp -r ${lib.escapeShellArg "${source}/${siteRoot}"} "$out/share/www"
  '';
in
{
  app =
    if siteRoot == null then throw "static template: no index.html at the root or in public/, dist/, build/, site/ or _site/"
    else convoy.component {
      name = "static-site";
      package = site;
      start = convoy.startScript {
        runtimeInputs = [ pkgs.darkhttpd ];
        text = ''
          exec darkhttpd ${site}/share/www --port "''${PORT:-${port}}" --no-listing
        '';
      };
    };
}
