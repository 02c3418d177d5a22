"""Expansion: the kubelet's $(VAR) semantics exactly, plus the seed's $VAR, ${VAR} and ~."""

import pytest

from vkcmd.pods.expand import expand_arg, expand_env_value, kubelet_expand

CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": "", "BIG_MONEY": "$$$"}


@pytest.mark.parametrize("given, expected", [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
    ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$(VAR_EMPTY)", ""),
    ("$(VAR_REF)", "$(VAR_A)"),            # a value is never expanded again
    ("$$(VAR_A)", "$(VAR_A)"),             # escaped
    ("$$$(VAR_A)", "$A"),
    ("$$$$(VAR_A)", "$$(VAR_A)"),
    ("f000-$$VAR_A", "f000-$VAR_A"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("$$$$$$$(BIG_MONEY)", "$$$$$$"),
    ("$(VAR_A", "$(VAR_A"),                 # incomplete reference
    ("$(VAR_A)$", "A$"),                    # trailing operator
    ("$", "$"),
    ("$$", "$"),
    ("$(", "$("),
    ("$()", "$()"),
    ("$VAR_A", "$VAR_A"),                   # not the kubelet's syntax: kept
    ("${VAR_A}", "${VAR_A}"),
    ("$(VAR_$(VAR_A))", "$(VAR_$(VAR_A))"),
    ("$($(VAR_A))", "$($(VAR_A))"),
    ("x$1y", "x$1y"),
    ("héllo $(VAR_A) ƒ", "héllo A ƒ"),
    ("", ""),
])
def test_kubelet_expansion(given, expected):
    assert kubelet_expand(given, CONTEXT) == expected


@pytest.mark.parametrize("given, expected", [
    ("$VAR_A", "A"),
    ("${VAR_A}", "A"),
    ("${VAR_A}x", "Ax"),
    ("$VAR_Ax", "$VAR_Ax"),                 # another name, undefined: kept for a shell to see
    ("$UNDEFINED", "$UNDEFINED"),
    ("${UNDEFINED}", "${UNDEFINED}"),
    ("${VAR_A", "${VAR_A"),
    ("${}", "${}"),
    ("${1}", "${1}"),
    ("$1 $@ $? $# $*", "$1 $@ $? $# $*"),   # shell specials are never env names
    ("$$VAR_A", "$VAR_A"),                  # $$ escapes the seed forms too
    ("$(VAR_A)$VAR_B${VAR_C}", "ABC"),
    ("$HOME/x", "/home/u/x"),
    ("${HOME}", "/home/u"),
    ("~", "/home/u"),
    ("~/bin/run", "/home/u/bin/run"),
    ("~user/x", "~user/x"),
    ("a~b", "a~b"),
    ("--dir=~/x", "--dir=~/x"),             # only a leading ~
    ("~/$(VAR_A)", "/home/u/A"),
    ("for i in 1 2; do echo $i; done", "for i in 1 2; do echo $i; done"),
])
def test_arg_expansion(given, expected):
    env = dict(CONTEXT, HOME="/elsewhere")
    assert expand_arg(given, env, "/home/u") == expected


def test_home_with_a_dollar_is_not_expanded_again():
    assert expand_arg("~/x", {"A": "1"}, "/h/$(A)") == "/h/$(A)/x"


@pytest.mark.parametrize("given, expected", [
    ("~/work", "/home/u/work"),
    ("~", "/home/u"),
    ("$HOME/work", "/home/u/work"),
    ("${HOME}/work", "/home/u/work"),
    ("$HOMEDIR", "$HOMEDIR"),
    ("~/bin:~/.local/bin:/usr/bin", "/home/u/bin:/home/u/.local/bin:/usr/bin"),
    ("$(VAR_A):~", "A:/home/u"),
    ("$VAR_A", "$VAR_A"),                   # env values: only $HOME among the seed forms
    ("x~y", "x~y"),
    ("$$(VAR_A)", "$(VAR_A)"),
])
def test_env_value_expansion(given, expected):
    assert expand_env_value(given, CONTEXT, "/home/u") == expected
