"""Minecart (Abels et al. 2019), MO-Gymnasium's `minecart-v0`, as a pure-JAX env.

A cart starts at the base in the top-left corner of the unit square, heading 45
degrees. Five mines hold two ores each; mining (standing still within 0.14 of a
mine) draws `max(0, N(mean, std))` of each ore from the nearest mine, scaled down
to the cart's free capacity (1.5). The episode ends when the cart, having left the
base (radius 0.15), comes back: the load is sold. Actions: 0 mine, 1 left (-10
degrees), 2 right (+10 degrees), 3 accelerate (+0.0075), 4 brake (speed to 0),
5 nothing. Each action is repeated for 4 frames (MO-Gymnasium's incremental frame
skip: the action acts every frame, the cart moves every frame). A cart pushing
against a wall at a slant slides along it by turning 10 degrees per frame.
Reward: `[ore 1 sold, ore 2 sold, fuel]`, fuel `-0.005` per frame, `-0.025` more
per accelerating frame and `-0.05` more per mining frame. Observation (7, float32):
`[x, y, speed, sin(angle), cos(angle), ore 1 / capacity, ore 2 / capacity]`.
Episodes are capped at 1000 steps (MO-Gymnasium's `max_episode_steps`).

Precision: the cart is simulated in JAX's default float width, float32 unless
`jax_enable_x64` is on; observations and rewards are float32 either way. Under
x64 a rollout equals MO-Gymnasium's step for step (the same IEEE operations in the
same order, and upstream's own `math.sin`/`math.cos` values, tabulated per whole
degree: headings are always whole degrees). In float32 it agrees to about 1e-5
until a wall contact whose outcome upstream's last bit decides (a cart turning
back along its own path lands exactly on the wall or a rounding error off it),
after which the two trajectories can part; nothing in the dynamics is smooth there.

Randomness: the only draw is the ore mined. `step` draws standard normals
`[frame_skip, 2]` from its key and `step_with_ore` is the deterministic core, so a
test can feed MO-Gymnasium's own draws through both.

The front (`pareto_front`, `convex_coverage_set`) is MO-Gymnasium's approximate
one, recomputed here: the expected discounted returns of open-loop routes (turn
to a mine, an accelerate/coast pattern to reach it, brake, turn around, mine k
times, the same pattern back), with the expected ore of a mining frame taken as
the mean of the truncated normal. It is the return of concrete plans under
approximations of the dynamics, not an exact front (`pareto_front_exact = False`);
MORL papers report that agents do not reach all of it.

Evaluation (`mo_spec`): gamma 0.98 and reference point (0, 0, -200), as in
Felten et al. (2023) for Envelope Q-learning on Minecart.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlx.envs.core import Box, Discrete, Environment
from rlx.envs.mo.spec import MOSpec, lattice_spec
from rlx.envs.registry import forwards_kwargs
from rlx.pareto import pareto_filter

MINE, LEFT, RIGHT, ACCEL, BRAKE, NONE = range(6)
ROTATION = 10.0  # degrees per frame
ACCELERATION = 0.0075
DECELERATION = 1.0
MAX_SPEED = 1.0
EPS_SPEED = 0.001  # below this the cart is at rest
FUEL_IDLE, FUEL_ACC, FUEL_MINE = -0.005, -0.025, -0.05
MINE_RADIUS = 0.14
BASE_RADIUS = 0.15
CAPACITY = 1.5
START_ANGLE = 45.0
#: mine_config.json of MO-Gymnasium 1.3.2: mine positions `[5, 2]` and, per mine and
#: ore, the mean and std of the normal the mined amount is drawn from `[5, 2]`.
#: Upstream's trig of a whole-degree heading, `[2 * ANGLE_RANGE + 1]` from
#: -ANGLE_RANGE degrees: cos/sin of `angle * pi / 180` for the velocity and of
#: `math.radians(angle)` for the observation (the two round differently).
ANGLE_RANGE = 720
_DEGREES = range(-ANGLE_RANGE, ANGLE_RANGE + 1)
VEL_COS = np.array([math.cos(a * math.pi / 180) for a in _DEGREES])
VEL_SIN = np.array([math.sin(a * math.pi / 180) for a in _DEGREES])
OBS_SIN = np.array([math.sin(math.radians(a)) for a in _DEGREES])
OBS_COS = np.array([math.cos(math.radians(a)) for a in _DEGREES])
MINE_POS = np.array([[0.16, 0.84], [0.5, 0.84], [0.84, 0.84], [0.84, 0.5], [0.84, 0.16]])
ORE_MEAN = np.array([[0.2, 0.0], [0.15, 0.1], [0.2, 0.2], [0.1, 0.15], [0.0, 0.2]])
ORE_STD = np.full((5, 2), 0.05)


@struct.dataclass
class MinecartState:
    """The cart: position `[2]`, speed, heading in degrees (not wrapped when sliding
    along a wall, as upstream), load `[2]`, whether it has left the base, step count."""

    pos: jax.Array  # [2] float (float32, or float64 under x64)
    speed: jax.Array  # float
    angle: jax.Array  # float, whole degrees
    content: jax.Array  # [2] float
    departed: jax.Array  # bool
    time: jax.Array  # int32


@struct.dataclass
class MinecartParams:
    """Minecart's params: the episode cap."""

    max_steps_in_episode: int = 1000


def truncated_normal_mean(mean: float, std: float) -> float:
    """Mean of `N(mean, std)` truncated to `[0, inf)` (the expected amount of one ore
    when negative draws count as the truncated law, as upstream's front does)."""
    if std == 0:
        return mean
    a = -mean / std
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    tail = 0.5 * math.erfc(a / math.sqrt(2))  # P(Z > a)
    return mean + std * pdf / tail


class Minecart(Environment):
    """Minecart with a 3-dimensional reward `[ore 1, ore 2, fuel]`; `frame_skip` (4)
    frames per step."""

    reward_dim = 3

    def __init__(self, frame_skip: int = 4):
        if int(frame_skip) < 1:
            raise ValueError(f"Minecart: frame_skip = {frame_skip} is invalid: it must be >= 1.")
        self.frame_skip = int(frame_skip)
        self.reward_low = np.array([0.0, 0.0, -1.0])
        self.reward_high = np.array([CAPACITY, CAPACITY, 0.0])
        #: Felten et al. (2023): gamma 0.98, reference point (0, 0, -200); EU over the
        #: 231-point Das-Dennis lattice (divisions 20).
        self.mo_spec: MOSpec = lattice_spec(ref_point=(0.0, 0.0, -200.0), divisions=20, gamma=0.98)
        self.pareto_front_exact = False

    @property
    def default_params(self) -> MinecartParams:
        return MinecartParams()

    def observation_space(self, params) -> Box:
        return Box(-1.0, 1.0, (7,), jnp.float32)

    def action_space(self, params) -> Discrete:
        return Discrete(6)

    def reset_env(self, key, params):
        f = _float()
        state = MinecartState(
            pos=jnp.zeros(2, f), speed=jnp.zeros((), f), angle=jnp.asarray(START_ANGLE, f),
            content=jnp.zeros(2, f), departed=jnp.asarray(False), time=jnp.asarray(0, jnp.int32),
        )  # fmt: skip
        return self._obs(state), state

    def ore_noise(self, key: jax.Array) -> jax.Array:
        """The standard normals `[frame_skip, 2]` one step draws from its key."""
        return jax.random.normal(key, (self.frame_skip, 2), _float())

    def step_env(self, key, state, action, params):
        return self.step_with_ore(state, action, self.ore_noise(key))

    def step_with_ore(self, state: MinecartState, action, noise: jax.Array):
        """One step with the ore draws given: `noise [frame_skip, 2]` standard normals,
        row f used if the cart mines in frame f (amount `max(0, mean + std * z)`).
        Returns `(obs [7], state, reward [3], terminated, {})`, no auto-reset."""
        action = jnp.asarray(action, jnp.int32)
        fuel = self.frame_skip * (
            FUEL_IDLE + jnp.where(action == ACCEL, FUEL_ACC, 0.0) + jnp.where(action == MINE, FUEL_MINE, 0.0)
        )

        def frame(carry, z):
            cart, ended, stopped, sold = carry
            moved = _apply_action(cart, action, z)
            stepped = _move(moved)
            at_base = _norm(stepped.pos) < BASE_RADIUS
            arrive = at_base & stepped.departed
            stepped = stepped.replace(departed=stepped.departed | ~at_base,
                                      content=jnp.where(arrive, 0.0, stepped.content))  # fmt: skip
            # Upstream applies the action in the frame after the one that ended the
            # episode (no motion), then leaves the frame loop: the final observation
            # shows that last turn or speed change.
            new = _select(stopped, cart, _select(ended, moved, stepped))
            live = ~stopped & ~ended
            sold = jnp.where(live & arrive, moved.content, sold)  # the load is sold on arrival
            return (new, ended | (live & arrive), stopped | ended, sold), None

        init = (state, jnp.asarray(False), jnp.asarray(False), jnp.zeros(2, state.content.dtype))
        (cart, ended, _, sold), _ = jax.lax.scan(frame, init, noise)
        reward = jnp.concatenate([sold, fuel[None]]).astype(jnp.float32)
        cart = cart.replace(time=state.time + 1)
        return self._obs(cart), cart, reward, ended, {}

    def _obs(self, state):
        i = _degree_index(state.angle)
        sin, cos = jnp.asarray(OBS_SIN, state.pos.dtype)[i], jnp.asarray(OBS_COS, state.pos.dtype)[i]
        return jnp.concatenate([state.pos, state.speed[None], sin[None], cos[None], state.content / CAPACITY]
                               ).astype(jnp.float32)  # fmt: skip

    # -- the approximate front (MO-Gymnasium's construction) -------------------------------

    def routes(self, gamma: float) -> np.ndarray:
        """Expected discounted returns `[n, 3]` (float64) of every route upstream's
        `pareto_front(gamma)` enumerates (symmetric patterns), before filtering."""
        fs = self.frame_skip
        half_turn = int(180 // (ROTATION * fs))
        fuel = fs * np.array([FUEL_MINE + FUEL_IDLE, FUEL_IDLE, FUEL_IDLE, FUEL_IDLE + FUEL_ACC, FUEL_IDLE, FUEL_IDLE])
        # An empty "mine" just outside the base stands for the route that never mines.
        corner = (BASE_RADIUS**2 / 2) ** (1 / 2)
        mines = [(MINE_POS[m], ORE_MEAN[m], ORE_STD[m]) for m in range(len(MINE_POS))]
        mines.append((np.array([corner, corner]), np.zeros(2), np.zeros(2)))
        returns = []
        for pos, mean, std in mines:
            distance = float(np.sqrt(np.dot(pos, pos))) - MINE_RADIUS - BASE_RADIUS / 2
            heading = math.degrees(math.atan2(pos[0] - pos[1], pos[0] + pos[1]))  # signed angle from (1, 1)
            turns = [LEFT] * int(math.ceil(abs(heading) / (ROTATION * fs)))
            patterns = _drive_patterns(distance, fs)
            per_frame = fs * np.array([truncated_normal_mean(m, s) for m, s in zip(mean, std)])
            total = per_frame.sum()
            max_mines = 0 if total == 0 else int(math.ceil(CAPACITY / total))
            routes = []
            for p in patterns:
                if max_mines:
                    for k in range(1, max_mines + 1):
                        routes.append((turns + p + [BRAKE] + [LEFT] * half_turn + [MINE] * k + p, k))
                else:
                    routes.append((turns + p + [LEFT] * half_turn + [NONE] + p[1:], 0))
            for seq, k in routes:
                r = np.zeros((len(seq), 3))
                r[:, 2] = fuel[seq]
                if k:
                    r[-1, :2] = per_frame * k / max(1.0, total * k / CAPACITY)
                returns.append((gamma ** np.arange(len(seq))) @ r)
        return np.asarray(returns)

    def pareto_front(self, gamma: float) -> np.ndarray:
        """Approximate discounted front `[m, 3]` (float64): the non-dominated `routes`."""
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"pareto_front: gamma must be in (0, 1], got {gamma}.")
        return pareto_filter(self.routes(gamma))

    def convex_coverage_set(self, gamma: float) -> np.ndarray:
        """The front's points on its convex hull seen from the front's componentwise
        minimum `[k, 3]` (upstream's approximate convex coverage set)."""
        from scipy.spatial import ConvexHull

        front = self.pareto_front(gamma)
        points = np.concatenate([front.min(0, keepdims=True), front])
        return front[np.array(sorted(i - 1 for i in ConvexHull(points).vertices if i != 0))]


def _drive_patterns(distance: float, fs: int) -> list[list[int]]:
    """Every accelerate/coast action pattern that first covers `distance`, starting
    with one acceleration from rest (upstream's estimate of the distance covered:
    `fs` frames of speed `v` cover `fs * v`, an accelerating step covers the sum of
    its `fs` increasing speeds)."""
    done: list[list[int]] = []
    stack = [(ACCELERATION * fs, distance - fs * (fs + 1) / 2 * ACCELERATION, [ACCEL])]
    while stack:
        speed, left, seq = stack.pop()
        n = speed / ACCELERATION + fs  # accelerations after this step
        # The same float operations as upstream, so that no `<= 0` test flips.
        covered = n * (n + 1) / 2 * ACCELERATION - (n - fs) * ((n - fs) + 1) / 2 * ACCELERATION
        for nxt_speed, nxt_left, a in ((speed + ACCELERATION * fs, left - covered, ACCEL), (speed, left - speed * fs, NONE)):
            if nxt_left <= 0:
                done.append(seq + [a])
            else:
                stack.append((nxt_speed, nxt_left, seq + [a]))
    return done


def _float():
    """JAX's default float: float32, or float64 under `jax_enable_x64`."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _degree_index(angle: jax.Array) -> jax.Array:
    """Row of a whole-degree heading in the trig tables."""
    return jnp.clip(jnp.round(angle).astype(jnp.int32) + ANGLE_RANGE, 0, 2 * ANGLE_RANGE)


def _norm(v: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis `[..., 2] -> [...]`, summed as upstream does."""
    return jnp.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def _select(pred, on_true: MinecartState, on_false: MinecartState) -> MinecartState:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _apply_action(cart: MinecartState, action, z) -> MinecartState:
    """One frame of the action itself: turn, speed change, or mining with draws `z [2]`."""
    turn = jnp.where(action == LEFT, -ROTATION, jnp.where(action == RIGHT, ROTATION, 0.0))
    angle = jnp.where(turn != 0, jnp.mod(cart.angle + turn, 360.0), cart.angle)
    dv = jnp.where(action == ACCEL, ACCELERATION, jnp.where(action == BRAKE, -DECELERATION, 0.0))
    speed = jnp.where(dv != 0, jnp.clip(cart.speed + dv, 0.0, MAX_SPEED), cart.speed)
    # Mining: at rest, within reach of the nearest mine.
    f = cart.pos.dtype
    d = _norm(cart.pos - jnp.asarray(MINE_POS, f))
    m = jnp.argmin(d)
    can = (action == MINE) & (cart.speed < EPS_SPEED) & (d[m] <= MINE_RADIUS)
    mined = jnp.maximum(0.0, jnp.asarray(ORE_MEAN, f)[m] + jnp.asarray(ORE_STD, f)[m] * z)
    free = CAPACITY - jnp.sum(cart.content)
    total = jnp.sum(mined)
    mined = jnp.where(total > free, mined * (free / jnp.where(total > 0, total, 1.0)), mined)
    content = jnp.where(can, cart.content + mined, cart.content)
    return cart.replace(angle=angle, speed=speed, content=content)


def _move(cart: MinecartState) -> MinecartState:
    """One frame of motion: the cart moves by its velocity, clipped to the unit
    square; pushing against a wall at a slant turns it 10 degrees along the wall
    (from the next frame on); its speed becomes the distance actually moved."""
    x, y = cart.pos[0], cart.pos[1]
    i = _degree_index(cart.angle)
    f = cart.pos.dtype
    vx, vy = cart.speed * jnp.asarray(VEL_COS, f)[i], cart.speed * jnp.asarray(VEL_SIN, f)[i]
    on_side = (y != 0) & (y != 1) & (jnp.abs(vy) > EPS_SPEED)
    on_floor = (x != 0) & (x != 1) & (jnp.abs(vx) > EPS_SPEED)
    sign_y, sign_x = jnp.where(vy < 0, -1.0, 1.0), jnp.where(vx < 0, -1.0, 1.0)
    turn = (
        jnp.where(on_side & (x == 1) & (vx > 0), ROTATION * sign_y, 0.0)
        - jnp.where(on_side & (x == 0) & (vx < 0), ROTATION * sign_y, 0.0)
        - jnp.where(on_floor & (y == 1) & (vy > 0), ROTATION * sign_x, 0.0)
        + jnp.where(on_floor & (y == 0) & (vy < 0), ROTATION * sign_x, 0.0)
    )
    pos = jnp.clip(cart.pos + jnp.stack([vx, vy]), 0.0, 1.0)
    moving = cart.speed >= EPS_SPEED
    speed = _norm(cart.pos - pos)
    return cart.replace(
        pos=jnp.where(moving, pos, cart.pos),
        speed=jnp.where(moving, speed, cart.speed),
        angle=jnp.where(moving, cart.angle + turn, cart.angle),
    )


@forwards_kwargs(MinecartParams)
def make_minecart(frame_skip: int = 4, **params) -> tuple[Minecart, MinecartParams]:
    """`rlx/minecart`: MO-Gymnasium's minecart-v0; keyword arguments are `MinecartParams`
    fields (and `frame_skip`)."""
    return Minecart(frame_skip), MinecartParams(**params)
