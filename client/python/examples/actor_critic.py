"""The math of PPO and TD3 as the δ each network receives, in numpy.

Sign convention (docs/model.md): δ = ∂loss/∂output for a loss to MINIMISE, one row per sample,
the minibatch mean's 1/N included. A deltaserve client sends these rows with SubmitDelta
(reduction SUM); tools/torch_ppo.py and tools/torch_td3.py minimise the same losses with
torch autograd, and tests/python/test_algorithms.py checks every function here against
autograd of those losses.

PPO (Gaussian policy, state-independent log-std; value network V; minibatch of N rows):
    r_i = exp(log π(a_i|s_i) − log π_old(a_i|s_i))
    L_policy = −mean_i min(r_i Â_i, clip(r_i, 1−ε, 1+ε) Â_i) − c_ent · mean_i H(π(·|s_i))
    L_value  = c_v · ½ · mean_i (V(s_i) − R_i)²
  δ_μ[i]  = −(1/N) · m_i · Â_i · r_i · (a_i − μ_i) / σ²          (policy-mean network)
  ∂L/∂log σ = Σ_i −(1/N) · m_i · Â_i · r_i · ((a_i − μ_i)² / σ² − 1) − c_ent   (the log-std)
  δ_V[i]  = c_v · (V(s_i) − R_i) / N                               (value network)
  with m_i = 0 where the clip is binding (Â_i > 0 and r_i > 1+ε, or Â_i < 0 and r_i < 1−ε),
  1 elsewhere.

TD3 (critics Q1, Q2; actor a = s_a · π(s), s_a the action scale; targets Q1', Q2', π'):
    ã  = clip(π'(s') · s_a + clip(n, −c, c) · s_a, −s_a, s_a),  n ~ N(0, σ_target²)
    y  = r + γ (1 − terminated) min(Q1'(s', ã), Q2'(s', ã))
    L_Qk   = ½ · mean_i (Qk(s_i, a_i) − y_i)²    →  δ_Qk[i] = (Qk(s_i, a_i) − y_i) / N
    L_actor = −mean_i Q1(s_i, s_a · π(s_i))       →  δ_π[i] = −s_a · ∂Q1/∂a(s_i, a) / N
  (∂Q1/∂a is the critic's input gradient at the action columns: deltaserve's InputGradient
  with δ = 1 per row.) CleanRL's F.mse_loss has twice this gradient; Adam is invariant to the
  factor (up to its ε).
"""

import math

import numpy as np


class RunningMeanStd:
    """Per-column float64 mean and variance, merged batch by batch (Chan et al.).

    Starts at mean 0, var 1, count 1e-4 and normalises as clip((x − mean)/sqrt(var + ε), ±clip):
    the statistics deltaserve's RUNNING_MEAN_STD input normalisation keeps.
    """

    def __init__(self, dim, clip=10.0, epsilon=1e-8):
        self.mean = np.zeros(dim, np.float64)
        self.var = np.ones(dim, np.float64)
        self.count = 1e-4
        self.clip, self.epsilon = clip, epsilon

    def update(self, x):
        x = np.asarray(x, np.float64).reshape(-1, self.mean.shape[0])
        batch_mean, batch_var, batch_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total
        self.mean = self.mean + delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x):
        z = (np.asarray(x, np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)


class RewardScaler:
    """Divides rewards by the running std of each environment's discounted return, then clips
    (gymnasium's NormalizeReward + TransformReward(clip), as CleanRL's PPO uses them). The
    discounted return restarts when an episode ends."""

    def __init__(self, num_envs, gamma, clip=10.0, epsilon=1e-8):
        self.returns = np.zeros(num_envs, np.float64)
        self.stats = RunningMeanStd(1)
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon

    def __call__(self, rewards, ends):
        """rewards, ends: one value per environment for this step; returns the scaled rewards."""
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(self.returns[:, None])
        scaled = np.clip(rewards / math.sqrt(self.stats.var[0] + self.epsilon), -self.clip, self.clip)
        self.returns[np.asarray(ends, bool)] = 0.0
        return scaled


def gae(rewards, values, next_values, terminated, ends, gamma, lam):
    """Generalised advantage estimation over a [T, E] rollout (time-major, E environments).

    next_values[t] = V(s_{t+1}) where s_{t+1} is the state the step reached (the final
    observation of a truncated episode, not the next episode's first), so truncation
    bootstraps and only termination cuts the value:
        d_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
        A_t = d_t + γ λ (1 − end_t) A_{t+1}        (end_t: the episode ended at step t)
    The last row bootstraps with A_T = 0. Returns (advantages, returns = advantages + values).
    """
    advantages = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1:], np.float64)
    for t in reversed(range(rewards.shape[0])):
        d = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        running = d + gamma * lam * (1.0 - ends[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def normalize_advantages(advantages):
    """(A − mean) / (std + 1e-8) over a minibatch, std with Bessel's correction (torch.std)."""
    return (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-8)


def gaussian_log_prob(mu, log_std, actions):
    """log N(actions; mu, exp(log_std)²) summed over action columns; rows are samples."""
    z = (actions - mu) * np.exp(-log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(axis=1)


def ppo_policy_deltas(mu, log_std, actions, old_log_prob, advantages, clip, ent_coef):
    """δ of the clipped-surrogate loss plus entropy bonus (module docstring).

    mu, actions: [N, A]; log_std: [A]; old_log_prob, advantages (already normalised): [N].
    Returns (delta_mu [N, A], grad_log_std [A]): delta_mu is the per-row δ the policy-mean
    network receives; grad_log_std is the log-std parameter's whole gradient.
    """
    n = mu.shape[0]
    ratio = np.exp(gaussian_log_prob(mu, log_std, actions) - old_log_prob)
    clipped = ((advantages > 0) & (ratio > 1 + clip)) | ((advantages < 0) & (ratio < 1 - clip))
    d_log_prob = np.where(clipped, 0.0, -advantages * ratio / n)  # ∂L/∂log π per row
    inv_var = np.exp(-2.0 * log_std)
    diff = actions - mu
    delta_mu = d_log_prob[:, None] * diff * inv_var
    grad_log_std = (d_log_prob[:, None] * (diff ** 2 * inv_var - 1.0)).sum(axis=0) - ent_coef
    return delta_mu, grad_log_std


def value_deltas(values, returns, vf_coef=1.0):
    """δ of c_v · ½ · mean (V − R)² for the value network: c_v (V − R) / N, shape [N]."""
    return vf_coef * (values - returns) / values.shape[0]


def td3_target(rewards, q1_next, q2_next, terminated, gamma):
    """y = r + γ (1 − terminated) min(Q1'(s', ã), Q2'(s', ã)); all arguments shape [N]."""
    return rewards + gamma * (1.0 - terminated) * np.minimum(q1_next, q2_next)


def td3_smoothed_action(target_actor_out, rng, noise_std, noise_clip, action_scale):
    """ã = clip(π'(s')·s_a + clip(n, −c, c)·s_a, −s_a, s_a) with n ~ N(0, noise_std²);
    target_actor_out is π'(s') in [−1, 1] (the tanh output), shape [N, A]."""
    noise = np.clip(rng.normal(0.0, noise_std, target_actor_out.shape), -noise_clip, noise_clip)
    return np.clip((target_actor_out + noise) * action_scale, -action_scale, action_scale)


def td3_critic_deltas(q, target):
    """δ of ½ · mean (Q − y)² for a critic: (Q − y) / N, shape [N]."""
    return (q - target) / q.shape[0]


def td3_actor_deltas(dq1_da, action_scale):
    """δ of −mean Q1(s, s_a·π(s)) for the actor's output π(s) (before scaling by s_a):
    −s_a · ∂Q1/∂a / N, shape [N, A]."""
    return -action_scale * dq1_da / dq1_da.shape[0]


class ReplayBuffer:
    """TD3's uniform replay of (s, a, r, s', terminated), float32 numpy arrays; shared by
    td3_pendulum.py and tools/torch_td3.py so both sample the same rows for the same rng."""

    def __init__(self, capacity, obs_dim, action_dim):
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, action_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size, self.capacity = 0, capacity

    def add(self, obs, action, reward, next_obs, terminated):
        i = self.size % self.capacity
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, terminated
        self.size += 1

    def sample(self, rng, batch):
        """(s, a, r, s', terminated) of `batch` rows drawn uniformly with rng.integers."""
        idx = rng.integers(0, min(self.size, self.capacity), batch)
        return (self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx],
                self.terminated[idx])


def add_td3_arguments(parser, hidden):
    """TD3's hyperparameters as flags, one definition for tools/torch_td3.py and
    td3_pendulum.py so both run the same algorithm by default (hidden: the default width)."""
    p = parser
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=hidden)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--policy-delay", type=int, default=2)
    p.add_argument("--exploration-noise", type=float, default=0.1)
    p.add_argument("--target-noise", type=float, default=0.2)
    p.add_argument("--target-noise-clip", type=float, default=0.5)
    p.add_argument("--csv", default="")


def add_ppo_arguments(parser, envs_help, rollout_help):
    """PPO's hyperparameters as flags, one definition for tools/torch_ppo.py and
    ppo_pendulum.py so both run the same algorithm by default."""
    p = parser
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--envs", type=int, default=8, help=envs_help)
    p.add_argument("--rollout", type=int, default=256, help=rollout_help)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minibatches", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.95)
    p.add_argument("--lam", type=float, default=0.95)
    p.add_argument("--clip", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.0)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--no-reward-scaling", action="store_true")
