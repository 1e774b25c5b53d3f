export { type BuildServerOptions, buildServer } from './app.js';
export { type ErrorBody, errorBody, toProblem } from './errors.js';
export {
  describeService,
  type RunningServer,
  type StartServerOptions,
  startServer,
} from './run.js';
export { Service, type ServiceLog, type ServiceState } from './service.js';
