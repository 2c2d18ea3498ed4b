"""``jsi``: a small command line. ``jsi demo`` runs the embedded model in JAX and shows sites, lens and steering."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import jax.numpy as jnp

    import jax_shard_interpret as jsi

    jm = jsi.load("smollm2-135m", framework=args.framework)
    prompt = args.prompt
    out, cache = jsi.run(jm, prompt, cache="blocks.*.resid_post")
    top = jm.tokenizer.decode([int(out[0, -1].argmax())])
    print(f"{jm!r}: {len(jm.sites())} sites; {prompt!r} -> {top!r}")
    print(
        f"cached {len(cache)} x blocks.*.resid_post, stacked {tuple(cache.stack('blocks.*.resid_post').shape)}"
    )
    lens = jsi.lens.logit_lens(jm, prompt, target=top)
    ranks = lens.rank()
    print("logit lens: rank of", repr(top), "by layer:", " ".join(str(int(r)) for r in ranks))
    dla = jsi.lens.direct_logit_attribution(jm, prompt, target=top)
    best = ", ".join(f"{n} {v:+.2f}" for n, v in dla.top_components(3))
    print(f"DLA of logit({top!r}) = {dla.total:.2f}: {best}")
    ids = jm.tokenize("I think that")[0]
    plain = jsi.steering.generate(jm, "I think that", max_new_tokens=8)
    emb = jnp.asarray(jm.module.embed_tokens.table())[jm.token_id(" Paris")]
    steered = jsi.steering.generate(
        jm, "I think that", max_new_tokens=8, interventions={"blocks.10.resid_post": jsi.Add(emb, scale=8.0)}
    )
    print("generate:", repr(jm.tokenizer.decode(list(plain[0, len(ids) :]))))
    print(
        "steered (+8 x embed(' Paris') at blocks.10.resid_post):",
        repr(jm.tokenizer.decode(list(steered[0, len(ids) :]))),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jsi", description="jax-shard-interpret command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded SmolLM2 in JAX: cache, logit lens, DLA, steering")
    demo.add_argument("--prompt", default="The Eiffel Tower is located in the city of")
    demo.add_argument("--framework", choices=["nnx", "eqx"], default="nnx")
    args = parser.parse_args(argv)
    from ._errors import JsiError

    try:
        return _demo(args)
    except JsiError as exc:
        print(f"jsi: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
