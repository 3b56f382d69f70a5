// A storage adapter for oidc-provider that keeps everything in memory and, when
// given a file, writes the whole state to it after every change (synchronously,
// before the provider answers). The test peer can then be stopped and started
// again on the same port and every refresh token, grant and session survives, as
// they do across a real provider's restarts.
//
// Test-only: no locking, no size limit, whole-file rewrites.

import * as fs from 'node:fs';
import * as path from 'node:path';

// Models whose records belong to a grant (revoked with it).
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

const epochTime = () => Math.floor(Date.now() / 1000);

const grantKeyFor = (grantId) => `grant:${grantId}`;
const sessionUidKeyFor = (uid) => `sessionUid:${uid}`;
const userCodeKeyFor = (userCode) => `userCode:${userCode}`;

export class Store {
  // file: where to persist, or undefined for memory only.
  constructor(file) {
    this.file = file;
    // key -> { value, exp } where exp is epoch milliseconds or null (never).
    this.map = new Map();
    if (file && fs.existsSync(file)) {
      const entries = JSON.parse(fs.readFileSync(file, 'utf8'));
      for (const [key, entry] of entries) {
        this.map.set(key, entry);
      }
      this.prune();
    }
  }

  get(key) {
    const entry = this.map.get(key);
    if (!entry) {
      return undefined;
    }
    if (entry.exp !== null && entry.exp <= Date.now()) {
      this.map.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, exp = null) {
    this.map.set(key, { value, exp });
  }

  delete(key) {
    this.map.delete(key);
  }

  prune() {
    const now = Date.now();
    for (const [key, entry] of this.map) {
      if (entry.exp !== null && entry.exp <= now) {
        this.map.delete(key);
      }
    }
  }

  // Writes the state out; called after every change.
  persist() {
    if (!this.file) {
      return;
    }
    this.prune();
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify([...this.map]), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }

  grantMembers(grantId) {
    return new Set(this.get(grantKeyFor(grantId)) ?? []);
  }

  setGrantMembers(grantId, members) {
    if (members.size === 0) {
      this.delete(grantKeyFor(grantId));
    } else {
      this.set(grantKeyFor(grantId), [...members]);
    }
  }

  // Deletes every token of the grant and the grant itself.
  revokeGrant(grantId) {
    for (const key of this.grantMembers(grantId)) {
      this.delete(key);
    }
    this.delete(grantKeyFor(grantId));
    this.delete(`Grant:${grantId}`);
    this.persist();
  }

  // The ids of the live grants of an account.
  grantIdsOfAccount(accountId) {
    const ids = [];
    for (const key of [...this.map.keys()]) {
      if (key.startsWith('Grant:')) {
        const payload = this.get(key);
        if (payload && payload.accountId === accountId) {
          ids.push(key.slice('Grant:'.length));
        }
      }
    }
    return ids;
  }
}

class Adapter {
  constructor(model, store) {
    this.model = model;
    this.store = store;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  removeIndexes(id, key, payload) {
    if (payload.uid && this.store.get(sessionUidKeyFor(payload.uid)) === id) {
      this.store.delete(sessionUidKeyFor(payload.uid));
    }
    if (payload.userCode && this.store.get(userCodeKeyFor(payload.userCode)) === id) {
      this.store.delete(userCodeKeyFor(payload.userCode));
    }
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const members = this.store.grantMembers(payload.grantId);
      members.delete(key);
      this.store.setGrantMembers(payload.grantId, members);
    }
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const exp = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
    const previous = this.store.get(key);
    if (previous) {
      this.removeIndexes(id, key, previous);
    }
    if (this.model === 'Session' && payload.uid) {
      this.store.set(sessionUidKeyFor(payload.uid), id, exp);
    }
    if (payload.userCode) {
      this.store.set(userCodeKeyFor(payload.userCode), id, exp);
    }
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const members = this.store.grantMembers(payload.grantId);
      members.add(key);
      this.store.setGrantMembers(payload.grantId, members);
    }
    this.store.set(key, payload, exp);
    this.store.persist();
  }

  async find(id) {
    return this.store.get(this.key(id));
  }

  async findByUid(uid) {
    const id = this.store.get(sessionUidKeyFor(uid));
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.store.get(userCodeKeyFor(userCode));
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = this.store.get(this.key(id));
    if (payload) {
      payload.consumed = epochTime();
      this.store.persist();
    }
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = this.store.get(key);
    this.store.delete(key);
    if (payload) {
      this.removeIndexes(id, key, payload);
    }
    this.store.persist();
  }

  async revokeByGrantId(grantId) {
    for (const key of this.store.grantMembers(grantId)) {
      this.store.delete(key);
    }
    this.store.delete(grantKeyFor(grantId));
    this.store.persist();
  }
}

// The `adapter` option of oidc-provider's configuration.
export function adapterFactory(store) {
  return (model) => new Adapter(model, store);
}

// Reads `name` from `dir` as JSON, or creates it with `make()` and writes it
// there (mode 0600); with no `dir`, just `make()`.
export function loadOrCreate(dir, name, make) {
  if (!dir) {
    return make();
  }
  const file = path.join(dir, name);
  if (fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  }
  const value = make();
  fs.writeFileSync(file, JSON.stringify(value), { mode: 0o600 });
  return value;
}
