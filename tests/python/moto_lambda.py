"""Sets up the Lambda API in a moto server for lambda-admission's tests.

usage: moto_lambda.py ENDPOINT create NAME | reserve NAME N | unreserve NAME | api NAME
(`api NAME`: a REST API with ANY /{proxy+} integrated with the function NAME, deployed to the
stage prod; prints its id)
"""
import io
import sys
import zipfile

import boto3

endpoint, command, name = sys.argv[1], sys.argv[2], sys.argv[3]
session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
lam = session.client("lambda", endpoint_url=endpoint)

if command == "create":
    iam = session.client("iam", endpoint_url=endpoint)
    role = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return event\n")
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )
elif command == "reserve":
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=int(sys.argv[4]))
elif command == "unreserve":
    lam.delete_function_concurrency(FunctionName=name)
elif command == "api":
    apigw = session.client("apigateway", endpoint_url=endpoint)
    api = apigw.create_rest_api(name=f"{name}-api")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    proxy = apigw.create_resource(restApiId=api, parentId=root, pathPart="{proxy+}")["id"]
    apigw.put_method(restApiId=api, resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    apigw.put_integration(
        restApiId=api, resourceId=proxy, httpMethod="ANY", type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations",
    )
    apigw.create_deployment(restApiId=api, stageName="prod")
    print(api)
else:
    sys.exit(f"unknown command {command}")
