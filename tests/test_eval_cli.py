"""`bgai eval`: a checkpoint against pubeval and GNU Backgammon; a table with CIs; bad input."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_model import ARGS, SETS

from bgai.cli.main import cli
from bgai.config import load_config, model_hash
from bgai.runs.manager import train_template
from bgai.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, env={}, overrides=SETS)
    meta = {"model_hash": model_hash(cfg), "model_version": 3}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 5, train_template(cfg), meta)


def run(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli, ["eval", *args, *ARGS])
    return out.exit_code, out.output


def row(output: str, label: str) -> list[str]:
    line = [x for x in output.splitlines() if x.startswith(label)][-1]  # after the progress bar
    return line.split()


def test_a_checkpoint_against_pubeval(ckpt: Path) -> None:
    code, out = run("--checkpoint", str(ckpt), "--opponent", "pubeval", "--games", "8")
    assert code == 0, out
    assert "vs pubeval" in out and "95% CI" in out and "W1" in out
    cells = row(out, ckpt.name)
    assert cells[1] == "8"
    w = [int(x) for x in cells[-7:-1]]  # W1 W2 W3 L1 L2 L3
    assert sum(w) == 8
    assert re.search(r"\[\s*\d", out)


def test_our_one_ply_player_against_pubeval(ckpt: Path) -> None:
    code, out = run(
        "--checkpoint", str(ckpt), "--opponent", "pubeval", "--games", "2", "--player-plies", "1",
        "--set", "eval.one_ply_candidates=2",
    )  # fmt: skip
    assert code == 0, out
    cells = row(out, ckpt.name + " 1-ply")
    assert cells[2] == "2" and sum(int(x) for x in cells[-7:-1]) == 2
    assert run("--checkpoint", str(ckpt), "--player-plies", "3")[0] == 2


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_cubeful_games_against_gnubg(ckpt: Path) -> None:
    code, out = run("--checkpoint", str(ckpt), "--opponent", "gnubg", "--cube", "--games", "2")
    assert code == 0, out
    assert "cubeful money" in out and "2 games, ppg" in out and "refereed" in out
    assert re.search(r"ours +doubles \d+, takes \d+, drops \d+", out)
    # both cube policies on the same dice: the paired difference is the difference of the ppgs
    code, out = run(
        "--checkpoint", str(ckpt), "--opponent", "gnubg", "--cube", "--games", "4", "--cube-policy", "both"
    )
    assert code == 0, out
    ppg = {
        m[1]: float(m[2]) for m in re.finditer(r"\((0-ply cube|naive cube)\) vs gnubg .*?ppg ([-+.\d]+)", out)
    }
    assert set(ppg) == {"0-ply cube", "naive cube"}, out
    assert re.search(r"ours +doubles 0, takes \d+, drops 0", out)  # the naive session
    diff = re.search(r"0-ply cube minus naive cube, paired by game \(the same dice\): ([-+.\d]+) \[", out)
    assert diff is not None and "over 4 games" in out, out
    assert float(diff[1]) == pytest.approx(ppg["0-ply cube"] - ppg["naive cube"], abs=1e-3)
    code, out = run("--checkpoint", str(ckpt), "--opponent", "self", "--cube", "--cube-policy", "both")
    assert code == 2 and "against gnubg only" in out


def test_cubeful_games_in_the_compiled_loop(ckpt: Path) -> None:
    """Against our own model with the naive cube, paired dice; `self` needs --cube."""
    code, out = run("--checkpoint", str(ckpt), "--opponent", "self", "--cube", "--games", "4")
    assert code == 0, out
    assert "vs self (naive cube), paired dice, cubeful money" in out and "4 games, ppg" in out
    assert re.search(r"theirs +doubles 0, takes \d+, drops 0", out)
    assert run("--checkpoint", str(ckpt), "--opponent", "self", "--games", "4")[0] == 2


def test_a_checkpoint_against_gnubg_in_process(ckpt: Path) -> None:
    pytest.importorskip("gnubg_nn")
    code, out = run(
        "--checkpoint", str(ckpt), "--opponent", "gnubg", "--plies", "0", "--backend", "nn", "--games", "4"
    )
    assert code == 0, out
    assert "vs gnubg_0ply" in out and row(out, ckpt.name)[1] == "4"


def test_bad_input_exits_2(ckpt: Path, tmp_path: Path) -> None:
    assert run("--opponent", "pubeval")[0] == 2  # neither --checkpoint nor --version
    code, out = run("--checkpoint", str(ckpt), "--games", "3")
    assert code == 2 and "even" in out
    code, out = run("--checkpoint", str(ckpt), "--opponent", "gnubg_9ply")
    assert code == 2 and "unknown opponent" in out
    bad = tmp_path / "bad.bgai"
    bad.write_bytes(b"garbage")
    code, out = run("--checkpoint", str(bad), "--games", "2")
    assert code == 2 and "not a bgai checkpoint" in out


def test_a_version_of_the_current_run(ckpt: Path, tmp_path: Path) -> None:
    """--version N: the run's checkpoint of version N on this host, else Redis's weights of N."""
    import jax
    from redis_server import redis_server

    from bgai.agent import net_of
    from bgai.config import config_hash
    from bgai.core.network import init_params
    from bgai.store import runstate, weights
    from bgai.store.client import connect
    from bgai.store.codec import encode_weights
    from bgai.store.keys import Keys

    with redis_server(tmp_path / "redis") as port:
        sets = ["--set", f"redis.port={port}", "--set", f"training.checkpoint_dir={tmp_path / 'ckpt'}"]
        cfg = load_config(None, env={}, overrides={**SETS, "redis.port": str(port)})
        r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "run-v")
        params = init_params(net_of(cfg), jax.random.key(1))
        blob = encode_weights(
            params, version=7, step=70, model_hash=model_hash(cfg), config_hash=config_hash(cfg)
        )
        weights.publish(r, keys, 7, blob)
        (tmp_path / "ckpt" / "run-v").mkdir(parents=True)
        (tmp_path / "ckpt" / "run-v" / ckpt.name).write_bytes(ckpt.read_bytes())  # version 3
        for v in (7, 3):
            code, out = run("--version", str(v), "--games", "2", *sets)
            assert code == 0, out
            assert row(out, f"version {v}")[2] == "2"
        code, out = run("--version", "5", "--games", "2", *sets)
        assert code == 2 and "version 5 of run run-v" in out and "[3]" in out
        r.close()


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_gnubg_plays_against_the_model_served_as_its_external_player(ckpt: Path) -> None:
    """`bgai gnubg-player`: a process serving the checkpoint on a port; gnubg connects there as a
    user would (`set player 1 external localhost:PORT`) and plays two cubeful money games."""
    import subprocess
    import sys

    from redis_server import free_port

    from bgai.opponents.referee import play_session, session_points

    port = free_port()
    args = ["gnubg-player", "--checkpoint", str(ckpt), "--port", str(port), "--once", *ARGS]
    bgai = Path(sys.executable).parent / "bgai"
    with subprocess.Popen([bgai, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the model is loaded and compiled: it listens
                if "listening on" in line:
                    break
            assert f"set player 1 external localhost:{port}" in line, line
            _, lines = play_session(None, 2, address=f"localhost:{port}", cubeful=True, seed=3)
            assert len(session_points(lines)) == 2
            rest = proc.stdout.read()  # to its exit: --once serves one connection
            proc.wait(60)
        except BaseException:
            proc.kill()
            raise
    assert proc.returncode == 0, rest
    served = re.search(r"gnubg disconnected after (\d+) moves and (\d+) cube decisions", rest)
    assert served and int(served[1]) > 0, rest
