"""The example app in Python, through the jsii-built wheel of lambda-admission-cdk.

    python app.py    # writes cdk.out/LambdaAdmissionExample.template.json

The layer zip comes from the repository's dist/ (layer-build/build.sh x86_64), or from the directory
in LAMBDA_ADMISSION_LAYER_DIR when set (CI points it at a stand-in when dist/ is empty). From an
installed wheel the repository's dist/ cannot be found, so here the default is the clone's dist/.
"""
import os

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lambda_admission_cdk import Coordinator, LambdaAdmission

HERE = os.path.dirname(os.path.abspath(__file__))
LAYER_DIR = os.environ.get("LAMBDA_ADMISSION_LAYER_DIR") or os.path.join(HERE, "..", "..", "..", "dist")


class ExampleStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        fn = lambda_.Function(
            self,
            "Api",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="app.handler",
            code=lambda_.Code.from_asset(os.path.join(HERE, "..", "example", "handler")),
            reserved_concurrent_executions=20,
        )
        # One method (ANY /{proxy+}): API Gateway throttles each method on its own.
        api = apigateway.RestApi(self, "RestApi", cloud_watch_role=False)
        api.root.add_resource("{proxy+}").add_method("ANY", apigateway.LambdaIntegration(fn))

        # lambda-admission: begin
        admission = LambdaAdmission(
            self,
            "Admission",
            coordinator=Coordinator.valkey_serverless(),
            layer_directory=LAYER_DIR,
        )
        admission.protect(fn, api=api)
        # lambda-admission: end


app = cdk.App(outdir=os.environ.get("CDK_OUTDIR", os.path.join(HERE, "cdk.out")))
ExampleStack(app, "LambdaAdmissionExample")
app.synth()
