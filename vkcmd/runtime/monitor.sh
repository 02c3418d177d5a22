# vkcmd run monitor: the session leader of one container run (POSIX sh; tested with dash and bash).
# usage: sh monitor.sh EXIT_FILE CWD NOFILE ARGV...   (exec'd by a stub that made it a child subreaper)
# Runs ARGV (never a builtin: `exec` in a subshell) in the foreground with the fds it was given,
# outlives HUP/INT/QUIT/TERM/USR1/USR2 (the command is in the same process group and gets its own
# copy of a group signal; a caught signal is reset to default in the command), records the exit
# status in EXIT_FILE and exits with the same status. EXIT_FILE is one short write, read by vkcmd
# only once this process has ended, so it needs no rename (which would cost a fork+exec of mv).
# A command killed by signal n gives 128+n, not found 127, not executable 126 (message on stderr).
# The command runs in the foreground, not with `&`: an async command of a non-interactive sh starts
# with SIGINT and SIGQUIT ignored, and keeps them so. The price: a signal sent to this process alone
# is not passed on (sh runs no trap while a foreground command runs). vkcmd signals every process
# of a run; by hand, signal the group: kill -TERM -- -PGID.
# A signal that arrives before the command exists is remembered and delivered to it as soon as it
# would (the subshell ends as the signal would have ended it: status 128+n). A signal landing in
# the instant between the fork and the subshell's trap reset would still be lost, so vkcmd holds a
# run's SIGTERM back until its command has started (runtime/process_scan.py).
_vkcmd_sig=
for _vkcmd_s in HUP INT QUIT TERM USR1 USR2; do
    trap "_vkcmd_sig=$_vkcmd_s" "$_vkcmd_s"
done
_vkcmd_exit=$1
cd -- "$2" || { printf '128\n' >"$_vkcmd_exit"; exit 128; }
[ "$3" = - ] || ulimit -S -n "$3" 2>/dev/null
shift 3
# Our own stderr goes to /dev/null from here on, so that the shell's "Terminated"/"Killed" notes do
# not land in the container's stderr; the command gets the real one back as fd 2.
exec 3>&2 2>/dev/null
( case $_vkcmd_sig in
    HUP) exit 129 ;; INT) exit 130 ;; QUIT) exit 131 ;; USR1) exit 138 ;; TERM) exit 143 ;; USR2) exit 140 ;;
  esac
  exec "$@" 2>&3 3>&- )
_vkcmd_st=$?
printf '%s\n' "$_vkcmd_st" >"$_vkcmd_exit"
# This process is a child subreaper (vkcmd's stub set it before exec'ing this script): whatever the
# run orphaned - double forks, setsid, env -i - was re-parented to it, so all that is left of the
# run now is our children and their descendants. Kill them before we exit, round after round (a
# killed child's own children become ours in turn), until only zombies are left; otherwise they
# would be re-parented out of the run, to init. Builtins only (no fork): read, kill, test.
_vkcmd_kids=/proc/$$/task/$$/children
_vkcmd_n=0
while [ "$_vkcmd_n" -lt 1000 ] && [ -r "$_vkcmd_kids" ]; do
    _vkcmd_list=
    read -r _vkcmd_list <"$_vkcmd_kids" || :
    _vkcmd_live=
    for _vkcmd_p in $_vkcmd_list; do
        _vkcmd_s=
        read -r _vkcmd_s <"/proc/$_vkcmd_p/stat" || :
        case ${_vkcmd_s##*) } in Z*|'') ;; *) _vkcmd_live="$_vkcmd_live $_vkcmd_p" ;; esac
    done
    [ -n "$_vkcmd_live" ] || break
    kill -KILL $_vkcmd_live
    _vkcmd_n=$((_vkcmd_n + 1))
done
exit "$_vkcmd_st"
