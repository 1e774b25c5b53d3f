/**
 * The methods each path of the API answers, for the `Allow` header of a 405
 * (RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in
 * a 405 response containing a list of the target resource's currently
 * supported methods"). Fastify answers a method no route has on a path that
 * other routes serve with its 404 handler (its router matches method and path
 * together), so the app keeps this table, fed by an onRoute hook, and its 404
 * handler asks it whether the path exists under other methods.
 */
export class AllowTable {
  private readonly routes: { pattern: RegExp; methods: Set<string> }[] = [];
  private readonly byUrl = new Map<string, Set<string>>();

  /** Records a route: `url` as registered (`/v1/devices/:id`), its method or methods. */
  add(url: string, method: string | readonly string[]): void {
    let methods = this.byUrl.get(url);
    if (!methods) {
      methods = new Set();
      this.byUrl.set(url, methods);
      this.routes.push({ pattern: patternOf(url), methods });
    }
    for (const m of typeof method === 'string' ? [method] : method) methods.add(m.toUpperCase());
  }

  /** The methods of every route whose path matches `path` (no query), sorted; empty: no such path. */
  allowed(path: string): string[] {
    const found = new Set<string>();
    for (const { pattern, methods } of this.routes) {
      if (pattern.test(path)) for (const m of methods) found.add(m);
    }
    return [...found].sort();
  }
}

/** A route path as a regular expression: `:param` one segment (empty included, as find-my-way). */
function patternOf(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) =>
      segment.startsWith(':') ? '[^/]*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}$`);
}
