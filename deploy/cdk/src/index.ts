export {
  AdaptiveController,
  AdaptiveOptions,
  AdmissionMode,
  DashboardMode,
  LambdaAdmission,
  LambdaAdmissionProps,
  ProtectOptions,
  Protection,
} from './admission';
export { Coordinator, CoordinatorConfig, RedisCoordinatorProps, ValkeyServerlessProps } from './coordinator';
