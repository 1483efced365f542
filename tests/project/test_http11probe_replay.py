"""tools.http11probe_replay and its C# subset, on C# written here in the probe's shape.

The real suites are read from a checkout of Http11Probe at run time, never kept
in this repository; these cases are this project's own.
"""

from __future__ import annotations

import pytest

from tools.csharp_subset import DotNetRandom, Unsupported, evaluate, globals_env, parse
from tools.http11probe_replay import main

SUITE = r"""
using System.Text;
namespace Http11Probe.TestCases.Suites;
public static class TinySuite
{
    private static bool IsOk(string body) => body == "OK";

    public static IEnumerable<TestCase> GetTestCases()
    {
        yield return new TestCase
        {
            Id = "TINY-SERVED",
            Description = "a plain GET is served",
            Category = TestCategory.Compliance,
            PayloadFactory = ctx => MakeRequest(
                $"GET / HTTP/1.1\r\nHost: {ctx.HostHeader}\r\n\r\n"),
            Expected = new ExpectedBehavior
            {
                CustomValidator = (response, state) =>
                {
                    if (response is null) return TestVerdict.Fail;
                    return response.StatusCode is >= 200 and < 300 && IsOk(response.Body ?? "")
                        ? TestVerdict.Pass
                        : TestVerdict.Fail;
                }
            }
        };

        yield return new TestCase
        {
            Id = "TINY-CTL",
            Description = "a control character in a value is refused",
            Category = TestCategory.MalformedInput,
            PayloadFactory = ctx =>
            {
                var value = "a" + new string('\x01', 2) + "b";
                var host = ctx.HostHeader;
                return MakeRequest($"GET / HTTP/1.1\r\nHost: {host}\r\nX-T: {value}\r\n\r\n");
            },
            Expected = new ExpectedBehavior
            {
                ExpectedStatus = StatusCodeRange.Exact(400),
                AllowConnectionClose = true
            }
        };

        yield return new TestCase
        {
            Id = "TINY-UNSCORED",
            Description = "not counted",
            Category = TestCategory.Compliance,
            Scored = false,
            PayloadFactory = _ => [],
            Expected = new ExpectedBehavior { ExpectedStatus = StatusCodeRange.Exact(400) }
        };
    }

    private static byte[] MakeRequest(string request) => Encoding.ASCII.GetBytes(request);
}
"""


def test_the_replay_runs_a_suite_against_rawbg_and_counts_only_scored_cases(tmp_path, capsys):
    suites = tmp_path / "src" / "Http11Probe" / "TestCases" / "Suites"
    suites.mkdir(parents=True)
    (suites / "TinySuite.cs").write_text(SUITE)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Pass           TINY-SERVED" in out
    assert "Pass           TINY-CTL" in out
    assert "TINY-UNSCORED" not in out
    assert "score (pass + warn, as the probe's site counts): 2 of 2" in out


def test_a_missing_snapshot_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="Http11Probe checkout"):
        main([str(tmp_path / "nothing")])


def test_csharp_hex_escapes_take_up_to_four_digits_and_ascii_encoding_replaces_the_rest():
    # "\x0Bdef" is U+0BDE then "f" in C#, and Encoding.ASCII sends "?" for U+0BDE
    env = globals_env()
    value = evaluate(parse(r'Encoding.ASCII.GetBytes("a\x07\x0Bdef")'), env)
    assert value == b"a\x07?f"


def test_patterns_ternaries_and_null_propagation_evaluate_as_in_csharp():
    env = globals_env()
    check = evaluate(
        parse("(code, s) => code is >= 200 and < 300 or 404 ? s?.Length ?? -1 : 0"), env
    )
    assert (check(204, "abc"), check(404, None), check(500, "x")) == (3, -1, 0)


def test_seeded_random_is_dotnets():
    # Http11Probe's MAL-BINARY-GARBAGE sends new Random(42)'s 256 bytes, whose first is ">"
    buffer = bytearray(4)
    DotNetRandom(42).NextBytes(buffer)
    assert buffer[:1] == b">"


def test_what_the_subset_does_not_know_is_unsupported_not_guessed():
    with pytest.raises(Unsupported):
        evaluate(parse("Path.Combine(a, b)"), globals_env())
