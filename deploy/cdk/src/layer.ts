import * as fs from 'fs';
import * as path from 'path';

/** The wrapper script the layer installs at /opt; AWS_LAMBDA_EXEC_WRAPPER points the runtime at it. */
export const WRAPPER_PATH = '/opt/lambda-admission-wrapper';

/** The layer's architectures, named as Lambda and `layer-build/build.sh` name them. */
export const ARCHITECTURES = ['x86_64', 'arm64'] as const;
export type ArchitectureName = (typeof ARCHITECTURES)[number];

export const PACKAGE_NAME = 'lambda-admission-cdk';

export function zipName(arch: ArchitectureName): string {
  return `lambda-admission-${arch}.zip`;
}

/**
 * The installed package's root: the nearest directory above this module whose package.json is
 * ours. Compiled code lives in `lib/` (jsii), `build/src/` (the tests) or a jsii runtime's
 * unpacked tarball, so the depth is not fixed.
 */
function findPackageRoot(from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if (JSON.parse(fs.readFileSync(manifest, 'utf8')).name === PACKAGE_NAME) {
          return dir;
        }
      } catch {
        // Not a readable manifest: keep walking up.
      }
    }
    if (path.dirname(dir) === dir) {
      return undefined;
    }
  }
}

/** Where the package is; tests point this elsewhere so that they do not depend on the clone's dist/. */
export const layerSearch: { packageRoot: string | undefined } = {
  packageRoot: findPackageRoot(__dirname),
};

/**
 * Where the layer zips are looked for, in order: the directory the user named; `layer/` inside
 * this package (where a release bundles them); the repository's `dist/`, for a package used from
 * a clone of the repository (`layer-build/build.sh all` writes there).
 */
export function searchDirectories(layerDirectory?: string): string[] {
  const dirs: string[] = [];
  if (layerDirectory !== undefined) {
    dirs.push(path.resolve(layerDirectory));
  }
  const root = layerSearch.packageRoot;
  if (root !== undefined) {
    dirs.push(path.join(root, 'layer'));
    // deploy/cdk in a clone: the repository's dist/. Installed under node_modules, the same
    // relative path would be the user's own project directory, which is not ours to search.
    if (!root.split(path.sep).includes('node_modules')) {
      dirs.push(path.resolve(root, '..', '..', 'dist'));
    }
  }
  return dirs;
}

/** The first zip for `arch` in the search directories, or undefined. */
export function findZip(arch: ArchitectureName, layerDirectory?: string): string | undefined {
  for (const dir of searchDirectories(layerDirectory)) {
    const candidate = path.join(dir, zipName(arch));
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
      return candidate;
    }
  }
  return undefined;
}
