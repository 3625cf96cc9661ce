# services.hive-trio: run the hive-trio daemon under systemd on NixOS.
#
# UNTESTED: written without a NixOS host to evaluate or boot it on. It mirrors the unit that
# `hive-trio install-unit` writes (hive_trio/service/hive-trio.service), which *is* tested (its
# readiness and watchdog against a fake notify socket, and `systemd-analyze verify`). Expect to adjust
# `package` to however you build hive-trio (e.g. a `python3Packages.buildPythonApplication` of this
# repository); nothing here has been through `nixos-rebuild`.
#
#   imports = [ ./contrib/nixos/hive-trio.nix ];
#   services.hive-trio = { enable = true; package = pkgs.hive-trio; dashboard = "127.0.0.1:7847"; };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.hive-trio;
in
{
  options.services.hive-trio = {
    enable = lib.mkEnableOption "the hive-trio host daemon for a hive of AI coding agents";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The hive-trio package; its bin/hive-trio is run.";
    };

    dashboard = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1:7847";
      description = "HOST:PORT the dashboard listens on (loopback by default; its token is in the state dir).";
    };

    agentCommand = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "exec my-agent-harness --socket {socket}";
      description = "The process backend's agent command template (--agent-command).";
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "A TOML config file (--config); flags set here win over it.";
    };

    watchdogSec = lib.mkOption {
      type = lib.types.int;
      default = 30;
      description = "systemd's WatchdogSec; the daemon pings at half of it from its event loop.";
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "More arguments for `hive-trio daemon`.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.hive-trio = {
      description = "hive-trio host daemon for a hive of AI coding agents";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      wants = [ "network.target" ];
      # Agents' config repos are git repositories; process agents may need more on PATH.
      path = [ pkgs.git ];
      environment.PYTHONUNBUFFERED = "1";
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/hive-trio" "daemon"
          "--state-dir" "/var/lib/hive-trio"
          "--runtime-dir" "/run/hive-trio"
          "--dashboard" cfg.dashboard
        ]
        ++ lib.optionals (cfg.agentCommand != null) [ "--agent-command" cfg.agentCommand ]
        ++ lib.optionals (cfg.configFile != null) [ "--config" "${cfg.configFile}" ]
        ++ cfg.extraArgs);
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        WatchdogSec = cfg.watchdogSec;
        Restart = "on-failure";
        RestartSec = 2;
        TimeoutStartSec = 60;
        KillMode = "mixed";
        TimeoutStopSec = 60;
        StateDirectory = "hive-trio";
        StateDirectoryMode = "0700";
        RuntimeDirectory = "hive-trio";
        RuntimeDirectoryMode = "0755";
        LimitNOFILE = 1048576;
      };
    };
  };
}
