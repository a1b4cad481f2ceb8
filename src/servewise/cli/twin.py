"""``servewise twin``: rehearse a GPU tier before renting it — an OpenAI-compatible server with simulated timing."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from servewise.capacity import EngineConfig
from servewise.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("twin")
    def twin_command(
        model: Annotated[str, typer.Option(help="Catalog name or config.json")] = "llama-3.1-8b",
        gpu: Annotated[str, typer.Option(help="GPU to simulate, e.g. rtx4090, h100-sxm")] = "rtx4090",
        num_gpus: Annotated[
            int | None, typer.Option(help="Tensor-parallel GPUs (default: fewest that fit)")
        ] = None,
        precision: Annotated[str, typer.Option(help="Weight precision")] = "bf16",
        kv_precision: Annotated[str | None, typer.Option(help="KV-cache precision")] = None,
        served_model_name: Annotated[
            str | None, typer.Option(help="Name clients send (default: --model)")
        ] = None,
        host: Annotated[str, typer.Option()] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
        max_num_seqs: Annotated[int, typer.Option(min=1)] = 256,
        max_batched_tokens: Annotated[int, typer.Option(min=1)] = 8192,
        time_scale: Annotated[
            float, typer.Option(help="Multiply every simulated duration (0.1: 10x faster)")
        ] = 1.0,
        prefix_cache: Annotated[
            bool, typer.Option(help="Cache prompt blocks across requests (vLLM's automatic prefix caching)")
        ] = True,
        block_size: Annotated[int, typer.Option(min=1, help="KV-cache block size in tokens")] = 16,
        image_model: Annotated[
            str | None,
            typer.Option(help="Be an image engine instead (sd-1.5, sdxl, flux-dev): /v1/images/generations"),
        ] = None,
    ) -> None:
        """Serve /v1/chat/completions, /v1/completions, /v1/models, /health and vLLM-named /metrics (with
        --image-model: /v1/images/generations, one image after another on the simulated GPU)."""
        if image_model is not None:
            from servewise.twin.images import create_image_app, serve_forever

            app = create_image_app(image_model, gpu, time_scale)  # refuses an unknown model or GPU first
            typer.echo(f"servewise twin: {image_model} images on {gpu} on http://{host}:{port}", err=True)
            try:
                serve_forever(app, host, port)
            except OSError as exc:
                raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            return
        from servewise.twin import build_config, run_twin

        options: dict[str, Any] = dict(
            num_gpus=num_gpus,
            precision=precision,
            kv_precision=kv_precision,
            served_model_name=served_model_name,
            time_scale=time_scale,
            prefix_caching=prefix_cache,
            engine=EngineConfig(
                max_num_seqs=max_num_seqs, max_batched_tokens=max_batched_tokens, block_size=block_size
            ),
        )
        config = build_config(model, gpu, **options)
        dep = config.deployment
        typer.echo(
            f"servewise twin: {config.served_model_name} as {dep.num_gpus}x {dep.gpu.name} "
            f"({dep.weight_precision}, KV {config.kv_capacity_tokens:,} tokens, prefix cache "
            f"{'on' if config.prefix_caching else 'off'}) on http://{host}:{port}",
            err=True,
        )
        try:
            run_twin(host, port, model=model, gpu=gpu, **options)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
