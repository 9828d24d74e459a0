"""Named presets: a world plus how to run it (later: scenario files)."""

from __future__ import annotations

from devices.health.drawn import HealthConfig
from devices.sim.fleet import SimConfig, Simulation
from devices.world.city import LONDON, World, build_world


def demo_scenario(
    seed: int = 1, n_subjects: int = 50, center: tuple[float, float] = LONDON
) -> tuple[World, Simulation]:
    """The live demo: fixes every 5 s, phones every 10 s, a third of subjects breaching,
    and several starting 50-200 m from a zone or victim phone so that alerts open within
    the first minute at warp 1; a fifth of the tags are tampered with and some lose
    coverage or go indoors. Plan it with `Simulation.run(start_t)` (live: now)."""
    world = build_world(seed, n_subjects, center)
    config = SimConfig(
        duration_s=2 * 3600.0,
        fix_interval_s=5.0,
        phone_interval_s=10.0,
        breach_fraction=0.3,
        quick_start=max(1, min(8, n_subjects // 6)),
        # device trouble a monitor should see within a demo: cut straps, tunnels, basements
        # (few flat batteries: a 24 h day's forgetful chargers would all start near empty)
        health=HealthConfig(
            tamper_fraction=0.2,
            coverage_gap_fraction=0.1,
            indoor_loss_fraction=0.05,
            forget_charge_fraction=0.03,
        ),
    )
    return world, Simulation(world, config)
